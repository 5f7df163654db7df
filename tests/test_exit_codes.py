"""One exit-status table: ``kontext_cli.errors``, the README, the man pages and kontextd agree.

The man pages' EXIT STATUS is generated from ``errors``' docstring (which
``docgen.exits`` checks against the classes); the README's table is written by
hand, so it is parsed here; kontextd's own exits are ``kontext.common.wire.EXIT_*``.
And two exits a newcomer met that did not match the table, done as they did them.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import KONTEXT, KONTEXTD, Kontext, one_line_error

from kontext.common import wire
from kontext_cli import errors
from kontext_cli.docgen.exits import EXEC_STATUSES, exit_statuses

ROOT = Path(__file__).parents[1]


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def readme_exit_table() -> dict[int, str]:
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", _readme_section("Exit status"), re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def test_the_readme_table_is_the_errors_table() -> None:
    readme = readme_exit_table()
    code_table = {code for code, _ in exit_statuses()}
    assert set(readme) == code_table
    for cls in (c for c in vars(errors).values() if isinstance(c, type)):
        if issubclass(cls, errors.KontextError) and cls.exit_code != 1:
            assert cls.exit_code in readme, cls.__name__


def test_the_man_page_says_the_same_numbers() -> None:
    page = (ROOT / "man" / "kontext.1").read_text()
    section = page.split(".SH EXIT STATUS", 1)[1].split("\n.SH ", 1)[0]
    assert {int(c) for c in re.findall(r"\\fB(\d+)\\fR", section)} == set(readme_exit_table())
    exec_page = (ROOT / "man" / "kontext-exec.1").read_text()
    for code, _ in EXEC_STATUSES:
        assert f"\\fB{code}\\fR" in exec_page
        assert f"**{code}**" in _readme_section("Exit status")


def test_kontextd_exits_with_the_tables_numbers() -> None:
    same = {
        wire.EXIT_ALREADY_RUNNING: errors.Conflict,
        wire.EXIT_CANNOT_START: errors.DaemonUnavailable,
        wire.EXIT_CONFIG_INVALID: errors.ConfigInvalid,
        wire.EXIT_SECRETS: errors.SecretsUnavailable,
        wire.EXIT_FOREIGN: errors.Forbidden,
        wire.EXIT_BUG: errors.KontextError,
    }
    for code, cls in same.items():
        assert cls.exit_code == code, cls.__name__
    named = {getattr(wire, n) for n in dir(wire) if n.startswith("EXIT_")}
    assert named == set(same)
    said = _readme_section("Exit status").split("`kontextd` uses the same numbers", 1)[1]
    said = said.split("\n\n", 1)[0]
    assert {int(n) for n in re.findall(r"\b(\d)\b", said)} == named


def test_a_second_kontextd_for_one_home_exits_4(kx: Kontext) -> None:
    proc = subprocess.run([KONTEXTD], env=kx.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == wire.EXIT_ALREADY_RUNNING == errors.Conflict.exit_code
    assert proc.stderr.startswith("kontextd: kontextd is already running")


def test_config_set_on_a_broken_file_is_6_and_a_bad_value_2(fresh_kx: Kontext) -> None:
    config = fresh_kx.home / "config" / "config.toml"
    config.parent.mkdir(mode=0o700)
    config.write_text("[secrets\nfallback = 'allow'\n")
    line = one_line_error(fresh_kx.run("config", "set", "secrets.fallback", "refuse"), 6)
    assert f"{config}: not valid TOML" in line
    assert config.read_text() == "[secrets\nfallback = 'allow'\n"  # nothing changed
    config.unlink()
    line = one_line_error(fresh_kx.run("config", "set", "secrets.fallback", "maybe"), 2)
    assert "secrets.fallback must be 'allow' or 'refuse', not 'maybe'" in line
    one_line_error(fresh_kx.run("config", "set", "no.such", "x"), 2)


@pytest.mark.parametrize(
    "command",
    [
        ("audit", "tail", "-n", "50"),  # the fast path's own writer
        ("audit", "tail", "-n", "50", "--json"),
        ("audit", "tail", "-n", "50", "--agent", "a"),  # the typer path
        ("agent", "list"),  # rich's console
        ("agent", "list", "--json"),
        ("audit", "export"),  # plain writes to stdout
    ],
    ids=" ".join,
)
def test_a_pipe_whose_reader_left_ends_quietly_with_141(
    kx: Kontext, command: tuple[str, ...]
) -> None:
    """``kontext audit tail | head -1``: the reader is gone before the rest is written. A
    newcomer saw status 1 ("a bug", by the table) and nothing said; it is the table's 141,
    still with nothing on stderr. The pipe's read end is closed before kontext writes, so
    the first write fails whatever the machine's speed."""
    kx.run("agent", "create", "a", "--allow", "github:pulls:read")  # once: kx is shared
    reader, writer = os.pipe()
    os.close(reader)
    try:
        proc = subprocess.run(
            [KONTEXT, *command],
            env=kx.env,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(writer)
    assert proc.returncode == errors.OutputClosed.exit_code == 141, proc.stderr
    assert proc.stderr == ""
