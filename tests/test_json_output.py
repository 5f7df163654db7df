"""Output for scripts and for people: ``--json`` everywhere something is listed,
colour and spinners only on a terminal, ``NO_COLOR`` honoured, errors on stderr.

The command tree is read from the CLI definition, so commands added later are
held to the same rules without editing this file.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
from typing import Any

import pytest
from conftest import KONTEXT, Kontext

from kontext_cli import gendocs, spinner

# A leaf command with one of these names lists or shows something.
LISTING = {"list", "show", "status", "check", "whoami", "tail", "explain", "doctor"}
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;[0-9;]+)m")
ANSI = re.compile(r"\x1b\[")


def listing_commands() -> list[gendocs.Command]:
    return [c for c in gendocs.leaves(gendocs.load_tree()) if c.path[-1] in LISTING]


def test_every_listing_command_has_json() -> None:
    commands = listing_commands()
    assert {"agent list", "audit tail", "daemon status", "doctor"} <= {
        " ".join(c.path) for c in commands
    }
    missing = [c.name for c in commands if "--json" not in {f for o in c.options for f in o.flags}]
    assert not missing, f"no --json: {missing}"


def _arguments(command: gendocs.Command, agent: str) -> list[str] | None:
    """Arguments that make ``command`` runnable here, or None if it needs ones we lack."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        if param.completes == gendocs.AGENT:
            args += ([param.long_flag] if param.is_option else []) + [agent]
        else:
            return None
    return args


def _parse(command: gendocs.Command, stdout: str) -> Any:
    if command.path == ("audit", "tail"):  # one JSON object per line
        return [json.loads(line) for line in stdout.splitlines()]
    return json.loads(stdout)


def test_json_output_parses_and_failures_stay_on_stderr(kx: Kontext) -> None:
    agent = kx.agent("github:pulls:read", prefix="json")
    ran = []
    for command in listing_commands():
        args = _arguments(command, agent)
        if args is None:
            continue
        proc = kx.run(*command.path, *args, "--json")
        ran.append(command.name)
        if proc.returncode == 0:
            _parse(command, proc.stdout)
        else:  # e.g. whoami before any login: an error, and no half-written JSON
            assert proc.stdout == "" or command.path == ("doctor",), (command.name, proc.stdout)
            assert proc.stderr.startswith("kontext: "), (command.name, proc.stderr)
            assert "Traceback" not in proc.stderr
    assert {"kontext agent list", "kontext agent show", "kontext policy explain"} <= set(ran)


def test_piped_output_has_no_escape_codes_even_without_no_color(kx: Kontext) -> None:
    env = {k: v for k, v in kx.env.items() if k != "NO_COLOR"}
    kx.agent("github:pulls:read", prefix="pipe")
    for args in (["agent", "list"], ["daemon", "status"], ["doctor"], ["audit", "tail"]):
        proc = subprocess.run([KONTEXT, *args], capture_output=True, text=True, env=env, timeout=60)
        assert not ANSI.search(proc.stdout + proc.stderr), (args, proc.stdout)


def on_terminal(k: Kontext, *args: str, env: dict[str, str]) -> str:
    """Run ``kontext ARGS`` with stdout and stderr on a pseudo-terminal; what it showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [KONTEXT, *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "200"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    proc.wait(timeout=60)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("args", [("doctor",), ("agent", "list")])
def test_colour_on_a_terminal_unless_no_color(kx: Kontext, args: tuple[str, ...]) -> None:
    kx.agent("github:pulls:read", prefix="tty")
    plain = {k: v for k, v in kx.env.items() if k != "NO_COLOR"}
    coloured = on_terminal(kx, *args, env=plain)
    assert ANSI.search(coloured), coloured
    if args == ("doctor",):
        assert COLOUR.search(coloured), "doctor's ok/warn/fail are coloured on a terminal"
    assert not COLOUR.search(on_terminal(kx, *args, env={**plain, "NO_COLOR": "1"}))


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_spinner_draws_only_on_a_terminal_and_clears_itself() -> None:
    screen = FakeTerminal()
    waiting = spinner.Spinner("starting kontextd", stream=screen)
    waiting.started -= spinner.DELAY  # past the grace period
    waiting.tick()
    waiting.tick()
    waiting.clear()
    shown = screen.getvalue()
    assert shown.count("starting kontextd") == 2 and shown.endswith("\r\x1b[K")
    piped = io.StringIO()
    quiet = spinner.Spinner("starting kontextd", stream=piped)
    quiet.started -= spinner.DELAY
    quiet.tick()
    quiet.clear()
    assert piped.getvalue() == ""


def test_starting_the_daemon_through_a_pipe_shows_no_spinner(fresh_kx: Kontext) -> None:
    proc = fresh_kx.ok("agent", "list")
    assert "\r" not in proc.stderr and "starting kontextd" not in proc.stderr
    assert proc.stderr.startswith("kontext: started kontextd in the background")


def test_starting_the_daemon_on_a_terminal_leaves_no_spinner_behind(fresh_kx: Kontext) -> None:
    shown = on_terminal(fresh_kx, "daemon", "start", env=fresh_kx.env)
    assert "started kontextd in the background" in shown
    if "starting kontextd" in shown:  # a slow start: the spinner ran, then was wiped
        assert "\r\x1b[K" in shown
