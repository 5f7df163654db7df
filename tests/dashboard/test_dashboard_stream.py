"""The dashboard's live stream: every open page gets what it asked for, no thread each,
resumes after a reconnect, and ends with its session."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Kontext, api_audit, api_new_agent, wait_until
from tests.dashboard.harness import Session, open_session


class Events:
    """One ``/dashboard/api/events`` stream read on a thread of the test's own."""

    def __init__(self, session: Session, query: str, last_id: int | None = None) -> None:
        k = session.k
        self.sock = socket.create_connection(("127.0.0.1", k.port), timeout=60)
        resume = f"Last-Event-ID: {last_id}\r\n" if last_id is not None else ""
        self.sock.sendall(
            f"GET /dashboard/api/events?{query} HTTP/1.1\r\nHost: 127.0.0.1:{k.port}\r\n"
            f"Cookie: {session.cookie}\r\n{resume}\r\n".encode()
        )
        self.frames: list[tuple[str, str, str]] = []  # (id, event, data)
        self.ready = threading.Event()
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(30), "the stream never said ready"

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            with self.sock.makefile("rb") as lines:
                for raw in lines:
                    line = raw.decode().rstrip("\r\n")
                    if line == "" and fields:
                        frame = (
                            fields.get("id", ""),
                            fields.get("event", ""),
                            fields.get("data", ""),
                        )
                        self.frames.append(frame)
                        if frame[1] == "ready":
                            self.ready.set()
                        fields = {}
                    elif ": " in line and line.split(": ", 1)[0] in ("id", "event", "data"):
                        name, value = line.split(": ", 1)
                        fields[name] = value
        except OSError:
            pass
        self.ended.set()

    def audit(self) -> list[dict]:
        return [json.loads(d)["event"] for _, e, d in self.frames if e == "audit"]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@contextmanager
def streams(session: Session, query: str, count: int = 1) -> Iterator[list[Events]]:
    opened = [Events(session, query) for _ in range(count)]
    try:
        yield opened
    finally:
        for stream in opened:
            stream.close()


def threads(k: Kontext) -> int:
    status = Path(f"/proc/{k.daemon_pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("Threads:")).split()[1])


def test_twenty_open_dashboards_each_get_a_new_event_without_a_thread_each(kx: Kontext) -> None:
    agent = api_new_agent(kx, "github:pulls:read", prefix="twenty")
    session = open_session(kx)
    before = threads(kx)
    with streams(session, f"history=0&agent={agent}", count=20) as open_streams:
        assert threads(kx) <= before + 1  # at most the hub's executor warming up
        assert kx.run("exec", "--agent", agent, "--", "true").returncode == 0
        for stream in open_streams:
            assert wait_until(
                lambda s=stream: "credential.issued" in [e["event"] for e in s.audit()],
                timeout=30,
            )
        assert all(e["agent"]["id"] == f"agent:{agent}" for s in open_streams for e in s.audit())
        assert threads(kx) <= before + 1


def test_a_page_that_only_reloads_gets_a_pulse_not_the_events(kx: Kontext) -> None:
    agent = api_new_agent(kx, "github:pulls:read", prefix="pulse")
    session = open_session(kx)
    with streams(session, f"mode=pulse&scope=state&agent={agent}") as (stream,):
        assert kx.run("exec", "--agent", agent, "--", "true").returncode == 0

        def counted() -> dict[str, int]:
            total: dict[str, int] = {}
            for _, kind, data in stream.frames:
                if kind == "changed":
                    for name, n in json.loads(data)["events"].items():
                        total[name] = total.get(name, 0) + n
            return total

        assert wait_until(lambda: counted().get("credential.revoked") == 1, timeout=30)
        assert counted()["credential.issued"] == 1
        assert stream.audit() == []  # no event bodies


def test_a_reconnecting_page_gets_what_it_missed(kx: Kontext) -> None:
    agent = api_new_agent(kx, "github:pulls:read", prefix="resume")
    session = open_session(kx)
    query = f"history=5&agent={agent}"
    with streams(session, query) as (first,):
        last = int(next(i for i, e, _ in reversed(first.frames) if e == "audit"))
    for _ in range(2):  # while the page is away
        assert kx.run("exec", "--agent", agent, "--", "true").returncode == 0
    resumed = Events(session, query, last_id=last)
    try:
        missed = resumed.audit()
        assert [e["event"] for e in missed] == ["credential.issued", "credential.revoked"] * 2
        assert all(e["id"] > last for e in missed)
    finally:
        resumed.close()


def test_signing_out_ends_the_sessions_streams(kx: Kontext) -> None:
    session = open_session(kx)
    other = open_session(kx)
    with streams(session, "history=0") as (mine,), streams(other, "history=0") as (theirs,):
        assert session.post("/dashboard/api/sign-out", {}).status_code == 200
        assert mine.ended.wait(30)
        assert not theirs.ended.is_set()


def test_a_flood_is_sent_live_as_its_newest_events_and_a_count_of_the_rest(kx: Kontext) -> None:
    """Every event of a flood reaches an open page exactly once: as itself, or inside a
    ``skipped`` range that says how many were not sent live (a batch sends at most its
    newest ``LIVE_CAP``). Whether a batch overflows depends on the machine's speed, so
    the test checks the accounting, which holds either way."""
    agent = api_new_agent(kx, "github:pulls:read", prefix="flood")
    session = open_session(kx)
    total = 8 * 40

    def issue(count: int) -> None:
        with kx.control() as api:
            for _ in range(count):
                answer = api.post("/v1/credentials", json={"agent": agent})
                assert answer.status_code == 201, answer.text

    with streams(session, f"history=0&agent={agent}&event=credential.issued") as (stream,):
        workers = [threading.Thread(target=issue, args=(total // 8,)) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        def received() -> tuple[list[int], list[dict[str, int]]]:
            frames = list(stream.frames)
            shown = [json.loads(d)["event"]["id"] for _, e, d in frames if e == "audit"]
            skipped = [json.loads(d) for _, e, d in frames if e == "skipped"]
            return shown, skipped

        def counted() -> int:
            shown, skipped = received()
            return len(shown) + sum(s["count"] for s in skipped)

        assert wait_until(lambda: counted() >= total, timeout=60)
        shown, skipped = received()
        assert counted() == total  # nothing twice
        assert shown == sorted(shown) and len(set(shown)) == len(shown)
        issued = sorted(e["id"] for e in api_audit(kx, agent) if e["event"] == "credential.issued")
        assert len(issued) == total and set(shown) <= set(issued)
        for said in skipped:  # each count is exactly the issued events in its range
            hidden = [i for i in issued if said["first"] <= i <= said["last"]]
            assert len(hidden) == said["count"] and not set(hidden) & set(shown)


def test_the_overview_counts_each_issuance_once_on_its_first_load_and_after(kx: Kontext) -> None:
    """The Overview's last hour is counted by time on the first load, then only what
    was appended since (by id): each credential is in its agent's count exactly once."""
    agent = api_new_agent(kx, "github:pulls:read", prefix="counted")
    session = open_session(kx)

    def issue(count: int) -> None:
        with kx.control() as api:
            for _ in range(count):
                assert api.post("/v1/credentials", json={"agent": agent}).status_code == 201

    def issued() -> int:
        answer = session.get("/dashboard/api/overview")
        assert answer.status_code == 200, answer.text
        row = next(r for r in answer.json()["agents"] if r["name"] == agent)
        return sum(row["activity"]["issued"])

    issue(3)
    assert wait_until(lambda: issued() == 3, timeout=10)
    issue(2)
    assert wait_until(lambda: issued() >= 5, timeout=10)  # the answer is shared for 1 s
    assert issued() == 5
