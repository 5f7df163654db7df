"""``kontext audit tail``'s fast path prints what the typer command prints, byte for byte.

The fast path (``kontext_cli.audittail``) takes the plain argument forms and skips
typer and rich; ``-n5`` (attached) is a form it declines, so the same request can
be made both ways and the outputs compared. The log holds, besides real events,
lines rich changes when it prints them (tabs, control characters, ``:emoji:``).
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

from kontext_cli.audittail import parse_fast, plain

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


def test_odd_text_is_printed_as_rich_prints_it(odd_log: Kontext) -> None:
    out = odd_log.ok("audit", "tail", "-n", "50").stdout
    assert re.search(r"\(tab {2,8}here, bell\)", out)  # tab expanded, bell dropped
    assert "crlf\nnext line)" in out  # carriage return dropped
    assert "[bold]x[/]" in out  # never markup
    assert "GET /r/a:b " in out and "ünïcödé 日本" in out


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"NO_COLOR": ""}, {"FORCE_COLOR": "1"}])
def test_colour_settings_change_nothing_in_a_pipe(odd_log: Kontext, env: dict[str, str]) -> None:
    plain = odd_log.ok("audit", "tail", "-n", "50").stdout
    assert odd_log.ok("audit", "tail", "-n", "50", env=env).stdout == plain


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
    assert seen == [(1, "")] * 4


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


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}, {"FORCE_COLOR": "1"}])
def test_a_terminal_gets_the_same_bytes_both_ways(odd_log: Kontext, env: dict[str, str]) -> None:
    # The console has no styles, markup or wrapping: a terminal changes nothing.
    assert parse_fast(["-n", "50"]) is not None
    fast = on_a_terminal(odd_log, "audit", "tail", "-n", "50", env=env)
    typer = on_a_terminal(odd_log, "audit", "tail", "-n50", env=env)
    assert fast == typer
    assert b"credential.denied" in fast and b"\x1b[" not in fast.replace(b"\x1b[31mred", b"")


@pytest.mark.parametrize(
    ("text", "unchanged"),
    [
        ("09:32:14 credential.issued  agent:pr-reviewer -> github [acme/x]", True),
        ("09:32:14 api.call           agent:x GET /a:b c:d 200", True),
        ("09:32:14 api.call           agent:x GET /a:b:c 200", False),
        ("09:32:14 x (:smile:)", False),
        ("09:32:14 x (::)", False),
        ("09:32:14 x\ty", False),
        ("09:32:14 x\ry", False),
        ("09:32:14 x\ny ünï 日本", True),
    ],
)
def test_plain_spots_what_rich_would_change(text: str, unchanged: bool) -> None:
    from rich.console import Console

    rendered = Console(highlight=False, soft_wrap=True, markup=False, force_terminal=False)
    with rendered.capture() as captured:
        rendered.print(text, markup=False)
    assert plain(text) is unchanged
    if unchanged:
        assert captured.get() == text + "\n"


def test_no_clock_minute_is_an_emoji_code() -> None:
    # plain() skips the clock's HH:MM:SS: rich reads ":MM:" as a code, which must stay text.
    from rich._emoji_codes import EMOJI

    assert not [f"{m:02d}" for m in range(60) if f"{m:02d}" in EMOJI]
