"""The dashboard's live audit stream: one reader for every open page, no thread per page.

Each open page holds one Server-Sent Events stream (HTML §9.2). A single ``Hub``
task — running only while at least one stream is open, so a closed dashboard
costs the daemon nothing — waits on the loopback server's ``AppendedFeed``,
reads what was appended with one query on a read-only connection of its own (the
store's lock is never taken, so issuance never waits for a dashboard), and hands
every stream the frames its filter matches. An event is framed once, from its
stored JSON text (never parsed and encoded again), however many pages watch.

A page that only needs to know *that* something changed (the Overview, Live
credentials, Consent grants: they reload their data) asks for ``pulse``: a
``changed`` message with how many events of each name arrived, instead of every
event, at most once per ``PULSE_EVERY`` seconds (a page cannot reload faster
anyway; every socket write costs the daemon more than the event itself). Pages
with the same filter share the bytes of each batch.

The hub reads at most once per ``COALESCE`` seconds: under a flood of events pages
get a few batches a second instead of one wake-up per commit, and an event after a
quiet spell still goes out at once. Of one batch a page is sent at most the newest
``LIVE_CAP`` events, after one ``skipped`` message counting the older ones (which ids,
how many): the Activity page keeps only its newest 500 lines and nobody reads a
flood line by line. The skipped events stay in the audit log (``kontext audit
export``). So the hub never reads every new row: per batch and filter it asks SQLite
for the newest ``LIVE_CAP`` rows and a count of the rest, or for a pulse the count of
each name (an aggregate over an index) — reading and matching each row of a flood
in Python, once per filter, was most of what open pages cost per credential.
A page that stops reading
(its backlog passes ``MAX_BACKLOG``) is disconnected; its browser reconnects with
``Last-Event-ID`` and is sent what it missed, up to ``RESUME_LIMIT`` events.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable

from kontextd.api.web.messages import Stream
from kontextd.api.web.sse import AppendedFeed
from kontextd.dashboard import selection as outcomes
from kontextd.store import audit_sql, dashboard_sql
from kontextd.store.dashboard_sql import EventSelection, RawEvent

COALESCE = 0.25
PULSE_EVERY = 1.0
KEEPALIVE = 15.0
MAX_BACKLOG = 4 * 1024 * 1024
RESUME_LIMIT = 2000
LIVE_CAP = 100  # events per batch sent to one page (at most ~4 batches a second)
HEADERS = [
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
]


def frame(row: RawEvent) -> bytes:
    """``id``, ``event: audit`` and the stored event with its outcome, on one data line
    (the body is canonical JSON: control characters are escaped, so it has no newline)."""
    data = f'{{"outcome":"{outcomes.outcome(row.event)}","event":{row.body}}}'
    return f"id: {row.id}\nevent: audit\ndata: {data}\n\n".encode()


def notice(kind: str, text: str) -> bytes:
    """A non-audit message to the page (``ready``: the past events are sent; ``gap``:
    events were skipped)."""
    return f"event: {kind}\ndata: {text}\n\n".encode()


def _frames(rows: list[RawEvent], framed: dict[int, bytes]) -> bytes:
    """The frames of ``rows``, each made once per batch whoever it goes to."""
    out = []
    for row in rows:
        data = framed.get(row.id)
        if data is None:
            data = framed[row.id] = frame(row)
        out.append(data)
    return b"".join(out)


def _live(
    rows: list[RawEvent], hidden: tuple[int, int, int] | None, framed: dict[int, bytes]
) -> bytes:
    """A batch for one page: ``rows`` (its newest events), after a ``skipped`` message
    for ``hidden`` (how many older ones were left out, the first id, the last)."""
    if hidden is None:
        return _frames(rows, framed)
    count, first, last = hidden
    text = json.dumps({"count": count, "first": first, "last": last}, separators=(",", ":"))
    return notice("skipped", text) + _frames(rows, framed)


def _pulse(counts: dict[str, int], last_id: int) -> bytes:
    """One ``changed`` message: how many events of each name, and the newest id."""
    data = json.dumps({"events": counts, "last_id": last_id}, separators=(",", ":"))
    return f"id: {last_id}\nevent: changed\ndata: {data}\n\n".encode()


class Subscriber:
    """One open stream: what it asked for, what it was last sent, what waits to go."""

    def __init__(self, selection: EventSelection, after: int, pulse: bool, owner: str) -> None:
        self.selection = selection
        self.after = after
        self.pulse = pulse
        self.owner = owner  # the dashboard session it belongs to
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.backlog = 0
        # Pulses: the counts not sent yet, when the last went, the flush waiting to go.
        self.counts: dict[str, int] = {}
        self.newest = after
        self.pulsed = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def put(self, chunk: bytes | None) -> None:
        self.backlog += len(chunk or b"")
        self.queue.put_nowait(chunk)

    def count(self, counts: dict[str, int], newest: int) -> None:
        for event, count in counts.items():
            self.counts[event] = self.counts.get(event, 0) + count
        self.newest = max(self.newest, newest)


class Hub:
    """Fans the audit log out to every open dashboard stream."""

    def __init__(self, database: str, feed: Callable[[], AppendedFeed]) -> None:
        self._database = database
        self._feed = feed
        self._conn: sqlite3.Connection | None = None
        self._subscribers: set[Subscriber] = set()
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def open_streams(self) -> int:
        return len(self._subscribers)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = audit_sql.open_readonly(self._database)
        return self._conn

    def stream(
        self,
        selection: EventSelection,
        history: int,
        resume: int | None,
        *,
        pulse: bool = False,
        owner: str = "",
    ) -> Stream:
        """An SSE answer: ``history`` past events (or, resuming, those after id
        ``resume``), then every new event ``selection`` matches, as it is appended
        (with ``pulse``, only a ``changed`` count per batch)."""
        first, sub = self._subscribe(selection, 0 if pulse else history, resume, pulse, owner)
        # The connection ends with the stream (a browser reconnects with a new one).
        return Stream(200, self._follow(sub), headers=list(HEADERS), prefix=first, close=True)

    def end(self, owner: str) -> None:
        """End every stream of a dashboard session (it signed out)."""
        for sub in [s for s in self._subscribers if s.owner == owner]:
            self._subscribers.discard(sub)
            sub.put(None)

    def _subscribe(
        self, selection: EventSelection, history: int, resume: int | None, pulse: bool, owner: str
    ) -> tuple[bytes, Subscriber]:
        conn = self._db()
        conn.execute("BEGIN")  # one snapshot: the newest id and the rows up to it agree
        try:
            newest = dashboard_sql.last_id(conn)
            if resume is not None and not pulse:
                rows = dashboard_sql.selected_after(conn, resume, RESUME_LIMIT + 1, selection)
                rows = [r for r in rows if r.id <= newest]
            else:
                rows = dashboard_sql.raw_last(conn, history, selection, before=newest)
        finally:
            conn.execute("COMMIT")
        parts = [b"retry: 2000\n: kontext dashboard stream\n\n"]
        if resume is not None and len(rows) > RESUME_LIMIT:
            parts.append(notice("gap", f"more than {RESUME_LIMIT} events were skipped"))
            rows = rows[-RESUME_LIMIT:]
        parts.extend(frame(row) for row in rows)
        parts.append(notice("ready", str(newest)))  # the past is sent; live from here
        sub = Subscriber(selection, newest, pulse, owner)
        self._subscribers.add(sub)
        if self._task is None:
            self._cursor = newest
            self._task = asyncio.get_running_loop().create_task(self._run())
        return b"".join(parts), sub

    async def _follow(self, sub: Subscriber) -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await sub.queue.get()
                if chunk is None:
                    return
                sub.backlog -= len(chunk)
                yield chunk
        finally:
            self._subscribers.discard(sub)
            if sub.timer is not None:
                sub.timer.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_read = -COALESCE
        try:
            while self._subscribers:
                committed = self._feed().waiter()  # before reading: no commit slips by
                if self._read():
                    last_read = loop.time()
                try:
                    await asyncio.wait_for(committed.wait(), KEEPALIVE)
                except TimeoutError:
                    for sub in list(self._subscribers):
                        self._give(sub, [b": keep-alive\n\n"])
                    continue
                # At most one read per COALESCE: after a quiet spell a commit goes out at
                # once; under a flood, what commits meanwhile joins the next read.
                await asyncio.sleep(max(0.0, last_read + COALESCE - loop.time()))
        finally:
            self._task = None

    def _read(self) -> bool:
        """Give every stream its share of what was appended; False if nothing was."""
        conn = self._db()
        conn.execute("BEGIN")  # one snapshot: the newest id and the rows up to it agree
        try:
            newest = dashboard_sql.last_id(conn)
            if newest <= self._cursor:
                return False
            # Streams with the same filter, last sent the same id, share one answer.
            groups: dict[tuple[EventSelection, int, bool], list[Subscriber]] = {}
            for sub in list(self._subscribers):
                if sub.after < newest:
                    groups.setdefault((sub.selection, sub.after, sub.pulse), []).append(sub)
            framed: dict[int, bytes] = {}
            for (selection, after, pulse), subs in groups.items():
                for sub in subs:
                    sub.after = newest
                if pulse:
                    self._pulse_all(
                        subs, *dashboard_sql.counts_between(conn, after, newest, selection)
                    )
                else:
                    data = self._batch(conn, selection, after, newest, framed)
                    for sub in subs if data else ():
                        self._give(sub, [data])
        finally:
            conn.execute("COMMIT")
        self._cursor = newest
        return True

    @staticmethod
    def _batch(
        conn: sqlite3.Connection,
        selection: EventSelection,
        after: int,
        upto: int,
        framed: dict[int, bytes],
    ) -> bytes:
        """What a page with ``selection`` is sent of (``after``, ``upto``]: the newest
        ``LIVE_CAP`` events and, if there were more, a count of the rest."""
        rows = dashboard_sql.newest_between(conn, after, upto, LIVE_CAP, selection)
        if not rows:
            return b""
        hidden = None
        if len(rows) == LIVE_CAP:
            count, first, last = dashboard_sql.span(conn, after, rows[0].id - 1, selection)
            if count and first is not None and last is not None:
                hidden = (count, first, last)
        return _live(rows, hidden, framed)

    def _pulse_all(self, subs: list[Subscriber], counts: dict[str, int], newest: int) -> None:
        if not counts:
            return
        for sub in subs:
            sub.count(counts, newest)
            self._pulse_soon(sub)

    def _pulse_soon(self, sub: Subscriber) -> None:
        """Send ``sub`` its counts now, or when ``PULSE_EVERY`` has passed since the last."""
        if sub.timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = sub.pulsed + PULSE_EVERY - loop.time()
        if wait > 0:
            sub.timer = loop.call_later(wait, self._pulse_now, sub)
        else:
            self._pulse_now(sub)

    def _pulse_now(self, sub: Subscriber) -> None:
        sub.timer = None
        if sub.counts and sub in self._subscribers:
            sub.pulsed = asyncio.get_running_loop().time()
            counts, sub.counts = sub.counts, {}
            self._give(sub, [_pulse(counts, sub.newest)])

    def _give(self, sub: Subscriber, chunks: list[bytes]) -> None:
        if sub.backlog > MAX_BACKLOG:
            # The page stopped reading: end its stream; its browser reconnects and
            # resumes from the last event it got (Last-Event-ID).
            self._subscribers.discard(sub)
            sub.put(None)
            return
        sub.put(b"".join(chunks))
