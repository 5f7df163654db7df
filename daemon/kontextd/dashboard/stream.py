"""The dashboard's live audit stream: one reader for every open page, no thread per page.

Each open page holds one Server-Sent Events stream (HTML §9.2). A single ``Hub``
task — running only while at least one stream is open, so a closed dashboard
costs the daemon nothing — waits on the loopback server's ``AppendedFeed``,
reads what was appended with one query on a read-only connection of its own (the
store's lock is never taken, so issuance never waits for a dashboard), and hands
every stream the frames its filter matches. An event is framed once, from its
stored JSON text (never parsed and encoded again), however many pages watch.

After a read the hub waits ``COALESCE`` seconds before the next one: under a flood
of events pages get a few batches a second instead of one wake-up per commit, and
an event after a quiet spell still goes out at once. A page that stops reading
(its backlog passes ``MAX_BACKLOG``) is disconnected; its browser reconnects with
``Last-Event-ID`` and is sent what it missed, up to ``RESUME_LIMIT`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable

from kontextd.api.web.messages import Stream
from kontextd.api.web.sse import AppendedFeed
from kontextd.dashboard import selection as outcomes
from kontextd.store import audit_sql, dashboard_sql
from kontextd.store.dashboard_sql import EventSelection, RawEvent

COALESCE = 0.2
KEEPALIVE = 15.0
BATCH = 1000
MAX_BACKLOG = 4 * 1024 * 1024
RESUME_LIMIT = 2000
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


class Subscriber:
    """One open stream: what it asked for, what it was last sent, what waits to go."""

    def __init__(self, selection: EventSelection, after: int) -> None:
        self.selection = selection
        self.after = after
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.backlog = 0

    def put(self, chunk: bytes | None) -> None:
        self.backlog += len(chunk or b"")
        self.queue.put_nowait(chunk)


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

    def stream(self, selection: EventSelection, history: int, resume: int | None) -> Stream:
        """An SSE answer: ``history`` past events (or, resuming, those after id
        ``resume``), then every new event ``selection`` matches, as it is appended."""
        first, sub = self._subscribe(selection, history, resume)
        return Stream(200, self._follow(sub), headers=list(HEADERS), prefix=first)

    def _subscribe(
        self, selection: EventSelection, history: int, resume: int | None
    ) -> tuple[bytes, Subscriber]:
        conn = self._db()
        conn.execute("BEGIN")  # one snapshot: the newest id and the rows up to it agree
        try:
            newest = dashboard_sql.last_id(conn)
            if resume is not None:
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
        sub = Subscriber(selection, newest)
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

    async def _run(self) -> None:
        try:
            while self._subscribers:
                committed = self._feed().waiter()  # before reading: no commit slips by
                rows = dashboard_sql.raw_after(self._db(), self._cursor, BATCH)
                if rows:
                    self._cursor = rows[-1].id
                    self._fan_out(rows)
                    await asyncio.sleep(0 if len(rows) == BATCH else COALESCE)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(committed.wait(), KEEPALIVE)
                    continue
                for sub in list(self._subscribers):
                    self._give(sub, [b": keep-alive\n\n"])
        finally:
            self._task = None

    def _fan_out(self, rows: list[RawEvent]) -> None:
        framed: dict[int, bytes] = {}
        for sub in list(self._subscribers):
            chunks = []
            for row in rows:
                if row.id > sub.after and sub.selection.matches(row):
                    if row.id not in framed:
                        framed[row.id] = frame(row)
                    chunks.append(framed[row.id])
            sub.after = max(sub.after, rows[-1].id)
            if chunks:
                self._give(sub, chunks)

    def _give(self, sub: Subscriber, chunks: list[bytes]) -> None:
        if sub.backlog > MAX_BACKLOG:
            # The page stopped reading: end its stream; its browser reconnects and
            # resumes from the last event it got (Last-Event-ID).
            self._subscribers.discard(sub)
            sub.put(None)
            return
        sub.put(b"".join(chunks))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
