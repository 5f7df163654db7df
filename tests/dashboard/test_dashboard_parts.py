"""The dashboard's small parts on their own: link and session lifetimes on a clock the
test moves, the command-line redaction, the Activity filters, a hidden tree process,
a flood's batch cut to its newest events."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kontextd.dashboard import access, processes, selection, stream
from kontextd.errors import ApiError
from kontextd.store.dashboard_sql import RawEvent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_link_works_once_and_only_within_its_two_minutes() -> None:
    clock = Clock()
    gate = access.DashboardAccess(clock)
    late = gate.new_link()
    clock.now += access.LINK_TTL + 1
    assert gate.redeem(late) is None  # expired
    link = gate.new_link()
    opened = gate.redeem(link)
    assert opened is not None
    assert gate.redeem(link) is None  # spent
    cookie, session = opened
    assert gate.session(cookie) is session
    assert session.csrf not in repr(session) and "<redacted>" in repr(session)


def test_a_session_ends_after_twelve_hours_or_when_signed_out() -> None:
    clock = Clock()
    gate = access.DashboardAccess(clock)
    first = gate.redeem(gate.new_link())
    second = gate.redeem(gate.new_link())
    assert first is not None and second is not None
    gate.end(second[1])
    assert gate.session(second[0]) is None
    clock.now += access.SESSION_TTL + 1
    assert gate.session(first[0]) is None


def test_waiting_links_and_open_sessions_are_bounded() -> None:
    gate = access.DashboardAccess(Clock())
    links = [gate.new_link() for _ in range(access.MAX_LINKS + 4)]
    assert gate.counts()[0] == access.MAX_LINKS
    assert gate.redeem(links[0]) is None  # the oldest made room
    for _ in range(access.MAX_SESSIONS + 2):
        gate.redeem(gate.new_link())
    assert gate.counts()[1] == access.MAX_SESSIONS


def test_the_csrf_check_wants_the_sessions_own_token() -> None:
    opened = access.DashboardAccess(Clock()).redeem(access.DashboardAccess().new_link())
    assert opened is None  # a link from another daemon's memory means nothing here
    gate = access.DashboardAccess(Clock())
    opened = gate.redeem(gate.new_link())
    assert opened is not None
    session = opened[1]
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok(None) and not session.csrf_ok("") and not session.csrf_ok("x")


def test_the_cookie_is_read_by_its_exact_name() -> None:
    header = "kontext_dashboard_80=wrong; kontext_dashboard_8080=right; other=1"
    assert access.read_cookie(header, 8080) == "right"
    assert access.read_cookie(header, 9) is None
    assert access.read_cookie(None, 8080) is None
    cookie = access.set_cookie(8080, "v")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard;" in cookie


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["./review.sh", "--repo", "acme/backend"], ["./review.sh", "--repo", "acme/backend"]),
        (["curl", "--token", "s3cr3t"], ["curl", "--token", "[redacted]"]),
        (["tool", "--api-key=abc"], ["tool", "--api-key=[redacted]"]),
        (["env", "GITHUB_TOKEN=ghp_x"], ["env", "GITHUB_TOKEN=[redacted]"]),
        (
            ["curl", "-H", "Authorization: Bearer abcdefgh12345"],
            ["curl", "-H", "Authorization: Bearer [redacted]"],
        ),
        (["gh", "ghp_0123456789abcdefABCDEF"], ["gh", "[redacted]"]),
        (["x", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"], ["x", "[redacted]"]),
        (["x", "A1" * 25], ["x", "[redacted]"]),
        (["/very/long/path/" * 5 + "script.py"], ["/very/long/path/" * 5 + "script.py"]),
        (["kontext", "token", "list"], ["kontext", "token", "list"]),
    ],
)
def test_command_lines_lose_anything_shaped_like_a_secret(
    argv: list[str], shown: list[str]
) -> None:
    assert processes.redact(argv) == shown


def test_activity_filters_are_validated_into_a_selection() -> None:
    chosen = selection.parse({"agent": "agent:pr-reviewer", "outcome": "denied"})
    assert chosen.agent == "agent:pr-reviewer"
    assert chosen.events == selection.OUTCOMES["denied"]
    other = selection.parse({"outcome": "other"})
    assert other.events is None and "credential.issued" in other.exclude
    narrowed = selection.parse({"event": "credential.issued", "outcome": "denied"})
    assert narrowed.events == frozenset()  # issued is never a denial: nothing matches
    for bad in ({"agent": "Bad Name"}, {"event": "credential.isued"}, {"outcome": "maybe"}):
        with pytest.raises(ApiError):
            selection.parse(bad)


HIDER = r"""
import ctypes, os
from kontextd.callers import Trees
go, ready = os.pipe(), os.pipe()
wrapper = os.fork()
if wrapper == 0:  # stands for kontext exec's wrapper; its child hides its open files
    child = os.fork()
    if child == 0:
        assert ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE 0
        os.write(ready[1], b"x")
        os.read(go[0], 1)
        os._exit(0)
    os.read(go[0], 1)
    os.waitpid(child, 0)
    os._exit(0)
os.read(ready[0], 1)
trees = Trees()
trees.add("jti-1", "hider", wrapper)
found = trees.holder(4294967295)  # no such socket: only a hidden process could hold it
print(found.kind, found.agent, found.how) if found else print(None)
os.write(go[1], b"xx")
os.waitpid(wrapper, 0)
"""


def test_a_tree_process_that_hides_its_files_counts_as_holding_the_socket() -> None:
    """Not root (root reads every process's files): a process in an exec tree that made
    itself not dumpable could be holding the connection's socket, so the dashboard
    treats the connection as the agent's (fail closed)."""
    if os.getuid() != 0:
        pytest.skip("switching to another uid needs root (setpriv)")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    ran = subprocess.run(
        [*nobody, sys.executable, "-I", "-c", HIDER],
        capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split(" ", 2)[:2] == ["agent", "hider"], ran.stdout
    assert "not dumpable" in ran.stdout


def test_a_batch_past_the_live_cap_is_a_skipped_count_then_the_newest_events() -> None:
    rows = [
        RawEvent(n, "credential.issued", "agent:a", f'{{"event":"credential.issued","id":{n}}}')
        for n in range(1, stream.LIVE_CAP + 51)
    ]
    small = stream._live(rows[: stream.LIVE_CAP], None, {})
    assert b"event: skipped" not in small and small.count(b"event: audit") == stream.LIVE_CAP
    big = stream._live(rows[50:], (50, 1, 50), {}).decode()
    head, _, rest = big.partition("\n\n")
    assert head == 'event: skipped\ndata: {"count":50,"first":1,"last":50}'
    assert rest.count("event: audit") == stream.LIVE_CAP
    assert rest.startswith("id: 51\n") and f"id: {stream.LIVE_CAP + 50}\n" in rest
