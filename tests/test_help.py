"""``--help`` as a newcomer read it: plain metavars, whole summaries, examples, ``-h``,
and errors in kontext's own words.

Every command of the CLI definition is checked, so commands added later are
held to the same rules.
"""

from __future__ import annotations

import re

import pytest
from conftest import Kontext, one_line_error

from kontext_cli import gendocs, main
from kontext_cli.docgen.examples import EXAMPLES

TREE = gendocs.load_tree()
COMMANDS = [c for c in gendocs.walk(TREE)]


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main.main([*args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_every_help_is_plain_whole_and_has_h(
    command: gendocs.Command, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(capsys, *command.path, "--help")
    assert _help(capsys, *command.path, "-h") == text
    # No Python types for values: <int range>, <str>, <list[str]>, {NAME}.
    assert not re.search(r"<[a-z][a-z \[\]|]*>", text), text
    assert "{" not in text.split("\n", 1)[0], text
    assert "1<=x" not in text and "…" not in text.replace("…T14:30", "")
    # A group lists each subcommand's whole summary, never cut with "...".
    for sub in command.subcommands:
        words = " ".join(text.split())
        assert sub.summary in words, (sub.name, words)
    if command.path in EXAMPLES:
        assert "Examples:" in text
        for _, line in EXAMPLES[command.path]:
            assert f"$ {line}" in text


def test_a_bad_number_is_said_in_kontexts_words(kx: Kontext) -> None:
    for args, hint in (
        (("audit", "tail", "-n", "0"), "'-n' / '--lines': use a whole number from 1 to 10000"),
        (("audit", "tail", "-n", "20000"), "'-n' / '--lines': use a whole number from 1 to 10000"),
        (("login", "--timeout", "soon"), "'--timeout': use a whole number from 5 to 3600"),
    ):
        line = one_line_error(kx.run(*args), 2)
        assert hint in line and "Input should be" not in line, line
    line = one_line_error(kx.run("completion", "tcsh"), 2)  # a choice: no "Value error, "
    assert line == (
        "kontext: invalid value for 'SHELL': 'tcsh' is not one of 'bash', 'zsh', 'fish' "
        "(see 'kontext completion --help')"
    )
    line = one_line_error(kx.run("agent", "create", "x", "--allow"), 2)
    assert line == (
        "kontext: option '--allow' requires an argument (see 'kontext agent create --help')"
    )


def test_verbose_shows_no_traceback_for_an_ordinary_not_found(kx: Kontext) -> None:
    line = one_line_error(kx.run("--verbose", "agent", "show", "nobody-here"), 3)
    assert line.startswith("kontext: no agent named nobody-here")
    line = one_line_error(kx.run("agent", "show", "nobody-here", env={"KONTEXT_DEBUG": "1"}), 3)
    assert "Traceback" not in line


def test_exec_h_is_exec_help(kx: Kontext) -> None:
    proc = kx.ok("exec", "-h")
    assert proc.stdout.startswith("Usage: kontext exec [OPTIONS] -- CMD [ARGS]...")
