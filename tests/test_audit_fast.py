"""``kontext audit tail``'s fast path prints what the typer command prints, byte for byte.

The fast path (``kontext_cli.audittail``) takes the plain argument forms and skips
typer and rich; ``-n5`` (attached) is a form it declines, so the same request can
be made both ways and the outputs compared. The log holds, besides real events,
text a terminal would obey or rich would change (escape sequences, C1 and bidi
controls, tabs, ``:emoji:``, ``[markup]``): both ways print it escaped and as is.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import KONTEXT, Kontext, one_line_error, short_home
from test_exec import HEAVY, loaded_modules

from kontext.common.printable import printable
from kontext_cli import errors
from kontext_cli.audittail import parse_fast

ODD_EVENTS = [
    {"event": "credential.denied", "agent": {"id": "agent:odd"}, "reason": "says :smile: a:b:c"},
    {"event": "credential.denied", "agent": {"id": "agent:odd"}, "reason": "tab\there, bell\x07"},
    {"event": "credential.revoked", "integration": "github", "reason": "cr\rlf\nnext line"},
    {"event": "credential.revoked", "target": "x:100:y", "reason": "ünïcödé 日本 \x1b[31mred"},
    {"event": "api.call", "agent": {"id": "agent:odd"}, "method": "GET", "path": "/r/a:b"},
    {"event": "api.denied", "agent": {"id": "agent:odd"}, "method": "PUT", "path": "/r/:x:"},
    {"event": "credential.denied", "user": {"id": "user:odd@example.com"}, "reason": "[bold]x[/]"},
]


@pytest.fixture(scope="module")
def odd_log() -> Iterator[Kontext]:
    """A home with real events, then events whose text rich would change; daemon running."""
    k = Kontext(short_home())
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # either makes rich treat a pipe as a TTY
        k.env.pop(name, None)
    k.agent("github:pulls:read", prefix="fast")
    k.stop()
    # Enough lines that a closed pipe is noticed (more than a pipe buffer holds).
    bulk = {"event": "credential.issued", "agent": {"id": "agent:bulk"}, "integration": "github"}
    append(k, [bulk] * 2000 + ODD_EVENTS)
    k.start()
    yield k
    k.stop()
    shutil.rmtree(k.home, ignore_errors=True)


def append(k: Kontext, events: list[dict[str, object]]) -> None:
    """Write events into the chain as the daemon would (it is stopped meanwhile)."""
    from kontextd.store.db import Store

    store = Store(str(k.database))
    with store.transaction() as tx:
        for event in events:
            tx.append_event(event)
    store.close()


BOTH_WAYS = [
    [],
    ["--json"],
    ["--event", "credential.denied"],
    ["--agent", "odd", "--json"],
    ["--agent=agent:odd"],
    ["--user", "user:odd@example.com"],
    ["--event=api.call", "--json"],
]


@pytest.mark.parametrize("args", BOTH_WAYS, ids=lambda a: " ".join(a) or "(none)")
def test_fast_path_prints_what_typer_prints(odd_log: Kontext, args: list[str]) -> None:
    assert parse_fast(["-n", "50", *args]) is not None and parse_fast(["-n50", *args]) is None
    fast = odd_log.ok("audit", "tail", "-n", "50", *args)
    typer = odd_log.ok("audit", "tail", "-n50", *args)
    assert fast.stdout.encode() == typer.stdout.encode()
    assert fast.stderr == typer.stderr == ""
    assert fast.stdout  # every filter above matches something


def test_odd_text_is_escaped_and_never_markup_or_emoji(odd_log: Kontext) -> None:
    out = odd_log.ok("audit", "tail", "-n", "50").stdout
    assert "(tab\\there, bell\\x07)" in out
    assert "(cr\\rlf\\nnext line)" in out and "ünïcödé 日本 \\x1b[31mred" in out
    assert "[bold]x[/]" in out and "says :smile: a:b:c" in out  # never markup, never emoji
    assert "GET /r/a:b" in out
    assert printable(out.replace("\n", "")) == out.replace("\n", "")  # nothing left to escape
    assert not [line for line in out.splitlines() if line != line.rstrip()]  # no trailing spaces


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"NO_COLOR": ""}, {"TERM": "dumb"}])
def test_no_colour_in_a_pipe(odd_log: Kontext, env: dict[str, str]) -> None:
    plain = odd_log.ok("audit", "tail", "-n", "50").stdout
    assert odd_log.ok("audit", "tail", "-n", "50", env=env).stdout == plain
    assert "\x1b" not in plain


def test_force_color_colours_a_pipe_the_same_both_ways(odd_log: Kontext) -> None:
    env = {"NO_COLOR": "", "FORCE_COLOR": "1"}
    fast = odd_log.ok("audit", "tail", "-n", "50", env=env).stdout
    assert fast == odd_log.ok("audit", "tail", "-n50", env=env).stdout
    assert "\x1b[32mcredential.issued\x1b[0m" in fast and "\x1b[2m" in fast
    assert "\\x1b[31mred" in fast  # the event's own escape stays escaped


def test_fast_path_imports_nothing_heavy(odd_log: Kontext, tmp_path: Path) -> None:
    # (A line rich would change does load rich, for that line: see test above.)
    for args in (["-n", "5", "--event", "agent.created"], ["--json", "--event", "api.call"]):
        code, modules = loaded_modules(odd_log, tmp_path, "audit", "tail", *args)
        assert code == 0
        assert modules == set(), f"the fast path loaded {sorted(modules)} (of {HEAVY})"


def test_declined_forms_still_work(odd_log: Kontext) -> None:
    # Help and usage errors come from the one typer definition.
    assert odd_log.ok("audit", "tail", "--help").stdout.startswith("Usage: kontext audit tail")
    assert "'-n' / '--lines'" in one_line_error(odd_log.run("audit", "tail", "-n", "0"), 2)
    assert "no such option" in one_line_error(odd_log.run("audit", "tail", "--bogus"), 2).lower()
    assert "requires an argument" in one_line_error(odd_log.run("audit", "tail", "--agent"), 2)
    # A bad agent name is the same one-line error either way.
    fast = one_line_error(odd_log.run("audit", "tail", "-n", "5", "--agent", "Not/An/Agent"), 2)
    typer = one_line_error(odd_log.run("audit", "tail", "-n5", "--agent", "Not/An/Agent"), 2)
    assert fast == typer and "invalid agent name" in fast


def test_a_mistyped_event_is_refused_both_ways(odd_log: Kontext) -> None:
    fast = one_line_error(odd_log.run("audit", "tail", "-n", "5", "--event", "credential.isued"), 2)
    typer = one_line_error(odd_log.run("audit", "tail", "-n5", "--event", "credential.isued"), 2)
    assert (
        fast
        == typer
        == ("kontext: unknown event 'credential.isued': did you mean credential.issued?")
    )
    far = one_line_error(odd_log.run("audit", "tail", "--event", "nothing.like.it"), 2)
    assert "the events are agent.changed, agent.created, " in far and "api.denied" in far


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["-f"],
        ["--since", "1h"],
        ["-n", "0"],
        ["-n", "10001"],
        ["-n", "+5"],
        ["-n", "٣"],
        ["-n=5"],
        ["-n", "5", "--lines", "6"],
        ["--agent", "a", "--agent", "b"],
        ["--agent", "--json"],
        ["--agent="],
        ["--json=1"],
        ["--", "x"],
        ["extra"],
    ],
    ids=" ".join,
)
def test_unusual_argv_leaves_the_fast_path(argv: list[str]) -> None:
    assert parse_fast(list(argv)) is None


def test_closed_pipe_ends_quietly_both_ways(odd_log: Kontext) -> None:
    seen = []
    for args in (["-n", "10000"], ["-n10000"], ["-n", "10000", "--json"], ["-n10000", "--json"]):
        proc = odd_log.popen("audit", "tail", *args)
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline()
        proc.stdout.close()  # like `| head -1`
        seen.append((proc.wait(timeout=30), proc.stderr.read()))
        proc.stderr.close()
    assert seen == [(errors.OutputClosed.exit_code, "")] * 4  # 141, silent, on both paths


def on_a_terminal(k: Kontext, *args: str, env: dict[str, str] | None = None) -> bytes:
    """What ``kontext ARGS`` writes to a pseudo-terminal, as a person at a shell sees it."""
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no \n -> \r\n: keep the program's own bytes
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen(
        [KONTEXT, *args],
        env={**k.env, **(env or {})},
        stdout=slave,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""
    proc.stderr.close()
    return out


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}, {"NO_COLOR": "", "TERM": "dumb"}])
def test_a_terminal_gets_the_same_bytes_both_ways(odd_log: Kontext, env: dict[str, str]) -> None:
    assert parse_fast(["-n", "50"]) is not None
    fast = on_a_terminal(odd_log, "audit", "tail", "-n", "50", env=env)
    typer = on_a_terminal(odd_log, "audit", "tail", "-n50", env=env)
    assert fast == typer
    assert b"credential.denied" in fast and b"\x1b" not in fast  # no colour, nothing raw


def test_a_terminal_gets_colour_unless_no_color(odd_log: Kontext) -> None:
    env = {"NO_COLOR": ""}
    fast = on_a_terminal(odd_log, "audit", "tail", "-n", "50", env=env)
    assert fast == on_a_terminal(odd_log, "audit", "tail", "-n50", env=env)
    assert b"\x1b[31mcredential.denied\x1b[0m" in fast
    # The colour codes are ours alone: with them removed, the plain bytes remain.
    plain = on_a_terminal(odd_log, "audit", "tail", "-n", "50")
    assert re.sub(rb"\x1b\[[0-9]*m", b"", fast) == plain
