"""Man pages and shell completions: generated from the CLI, committed, and never stale.

A user reads ``man kontext-exec`` and presses Tab; both must describe the CLI
that is installed. These tests regenerate everything and compare it with the
committed files, check that the man pages render without a single groff
warning, and drive the completion scripts the way each shell would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KONTEXT, Kontext

from kontext_cli import gendocs

ROOT = Path(__file__).resolve().parent.parent
COMPLETIONS = ROOT / "completions"
MAN = ROOT / "man"
REGENERATE = "python -m kontext_cli.gendocs"


@pytest.fixture(scope="module")
def tree() -> gendocs.Command:
    return gendocs.load_tree()


@pytest.fixture(scope="module")
def generated(tree: gendocs.Command) -> dict[str, str]:
    return gendocs.render_all(tree)


def needs(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (.ci/run installs it)")
    return path


# -- freshness ----------------------------------------------------------------


def test_committed_man_pages_and_completions_match_the_cli(generated: dict[str, str]) -> None:
    stale = gendocs.stale_files(ROOT, generated)
    assert not stale, (
        f"man/ or completions/ are stale ({', '.join(stale)}): run `{REGENERATE}` and commit"
    )


def test_regenerating_into_an_empty_directory_writes_every_file(
    tmp_path: Path, generated: dict[str, str]
) -> None:
    written = gendocs.write_files(tmp_path, generated)
    assert sorted(written) == sorted(generated)
    assert gendocs.stale_files(tmp_path, generated) == []
    assert gendocs.render_all(gendocs.load_tree()) == generated, "output must be deterministic"


def test_check_mode_names_stale_and_stray_files(tmp_path: Path, generated: dict[str, str]) -> None:
    gendocs.write_files(tmp_path, generated)
    (tmp_path / "man" / "kontext-exec.1").write_text("old\n")
    (tmp_path / "man" / "kontext-gone.1").write_text("left behind\n")
    proc = _run_gendocs("--check", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert "stale: man/kontext-exec.1" in proc.stderr
    assert "stale: man/kontext-gone.1" in proc.stderr
    assert REGENERATE in proc.stderr
    assert _run_gendocs("--out", str(tmp_path)).returncode == 0
    assert _run_gendocs("--check", "--out", str(tmp_path)).returncode == 0
    assert not (tmp_path / "man" / "kontext-gone.1").exists()


def _run_gendocs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kontext_cli.gendocs", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


# -- man pages ------------------------------------------------------------------


def test_every_leaf_command_has_a_page_with_exit_status_and_examples(
    tree: gendocs.Command,
) -> None:
    leaves = gendocs.leaves(tree)
    assert {c.page for c in leaves} >= {
        "kontext-exec",
        "kontext-agent-create",
        "kontext-audit-tail",
    }
    for command in leaves:
        page = MAN / f"{command.page}.1"
        assert page.exists(), f"no man page for {command.name}: run `{REGENERATE}`"
        text = page.read_text()
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"):
            assert f"\n.SH {section}\n" in text, f"{page.name} has no {section} section"


def test_kontext_1_documents_every_exit_status_and_the_walkthrough() -> None:
    text = (MAN / "kontext.1").read_text()
    for code in range(10):
        assert f"\n\\fB{code}\\fR\n" in text, f"exit status {code} is missing from kontext.1"
    for variable in ("KONTEXT_HOME", "NO_COLOR", "KONTEXT_DEBUG"):
        assert f"\\fB{variable}\\fR" in text
    assert "kontext revoke agent:issue\\-triage" in text
    assert "kontext audit tail \\-f" in text


def test_exec_page_documents_its_own_exit_statuses() -> None:
    text = (MAN / "kontext-exec.1").read_text()
    for code in ("122", "125", "126", "127"):
        assert f"\\fB{code}\\fR" in text


@pytest.mark.parametrize("page", ["kontext-exec.1", "kontext.1", "kontext-revoke.1"])
def test_man_page_renders_without_warnings(page: str) -> None:
    groff = needs("groff")
    proc = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", str(MAN / page)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert proc.stderr == "", proc.stderr
    text = re.sub(".\b", "", proc.stdout)  # grotty's overstriking (bold, underline)
    assert "EXIT STATUS" in text and "EXAMPLES" in text


def test_every_man_page_renders_without_warnings() -> None:
    groff = needs("groff")
    for page in sorted(MAN.glob("*.1")):
        proc = subprocess.run(
            [groff, "-man", "-Tutf8", "-ww", "-z", str(page)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.stderr == "", f"{page.name}: {proc.stderr}"


# -- completion scripts: syntax -----------------------------------------------------


def test_bash_completion_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(COMPLETIONS / "kontext.bash")], capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_zsh_completion_is_valid_zsh() -> None:
    zsh = needs("zsh")
    proc = subprocess.run([zsh, "-n", str(COMPLETIONS / "_kontext")], capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_fish_completion_is_valid_fish() -> None:
    fish = needs("fish")
    proc = subprocess.run(
        [fish, "--no-execute", str(COMPLETIONS / "kontext.fish")], capture_output=True
    )
    assert proc.returncode == 0, proc.stderr


# -- completion scripts: behaviour --------------------------------------------------

BASH_DRIVER = r"""
source "$1"
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_kontext
printf '%s\n' "${COMPREPLY[@]}"
"""


def bash_complete(line: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end)."""
    proc = subprocess.run(
        ["bash", "-c", BASH_DRIVER, "driver", str(COMPLETIONS / "kontext.bash"), line],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return [x for x in proc.stdout.splitlines() if x]


def fish_complete(line: str, env: dict[str, str] | None = None) -> list[str]:
    fish = needs("fish")
    script = f"source {COMPLETIONS / 'kontext.fish'}; complete -C {_fish_literal(line)}"
    proc = subprocess.run(
        [fish, "--no-config", "-c", script], capture_output=True, text=True, timeout=30, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return [x.split("\t")[0] for x in proc.stdout.splitlines() if x]


def _fish_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def test_bash_completes_commands_subcommands_options_and_scopes(tmp_path: Path) -> None:
    env = {**os.environ, "KONTEXT_HOME": str(tmp_path)}
    assert {"agent", "exec", "revoke", "audit"} <= set(bash_complete("kontext ", env))
    assert bash_complete("kontext agent cr", env) == ["create"]
    assert "--no-confine" in bash_complete("kontext exec --", env)
    # bash breaks words at ':', so only the last part is completed.
    scopes = bash_complete("kontext agent create x --allow github:pulls:w", env)
    assert scopes == ["write"]
    assert "--follow" in bash_complete("kontext audit tail --", env)


def test_bash_completes_the_command_that_exec_runs(tmp_path: Path) -> None:
    env = {**os.environ, "KONTEXT_HOME": str(tmp_path)}
    assert "bash" in bash_complete("kontext exec --agent a -- bas", env)


def test_fish_completes_commands_and_options(tmp_path: Path) -> None:
    env = {**os.environ, "KONTEXT_HOME": str(tmp_path)}
    assert {"agent", "exec", "revoke"} <= set(fish_complete("kontext ", env))
    assert set(fish_complete("kontext agent ", env)) >= {"create", "show", "list"}
    assert "--no-confine" in fish_complete("kontext exec --", env)


def test_agent_names_complete_live_from_a_running_daemon(kx: Kontext) -> None:
    name = kx.agent("github:pulls:read", prefix="compl")
    # The completion runs the kontext it completes for: the first word of the line.
    assert name in bash_complete(f"{KONTEXT} agent show ", kx.env)
    assert name in bash_complete(f"{KONTEXT} exec --agent ", kx.env)
    assert f"agent:{name}" in bash_complete(f"{KONTEXT} revoke ", kx.env)
    if shutil.which("fish"):
        assert name in fish_complete(f"{KONTEXT} agent show ", kx.env)
        assert f"agent:{name}" in fish_complete(f"{KONTEXT} revoke ", kx.env)


def test_completion_never_starts_the_daemon(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "KONTEXT_HOME": str(home)}
    assert bash_complete(f"{KONTEXT} agent show ", env) == []
    assert bash_complete(f"{KONTEXT} revoke ", env) == ["credential"]
    if shutil.which("fish"):
        assert fish_complete(f"{KONTEXT} agent show ", env) == []
    assert not home.exists(), "completion must not start kontextd"
