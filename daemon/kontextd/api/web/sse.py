"""Server-Sent Events (HTML §9.2) from the audit log, with no thread per stream.

The store calls its ``commit_listeners`` after every commit, on whichever thread
committed. ``AppendedFeed`` registers one listener per server that hops onto the
event loop (``call_soon_threadsafe``) and wakes every waiting stream at once; each
stream then reads what is new with one indexed query and sends it. Twenty or two
thousand open streams cost one listener and a coroutine each.

A route streams events like this (an ``async`` route; mind its ``Policy`` — the
audit is not public, so such a route needs its own authentication, e.g. the
dashboard's cookie)::

    async def tail(self, request: Request) -> Stream:
        return sse.events(self.feed, self.core.store, after=self.core.store.last_event_id())

Each event is ``id: N``, ``event: audit``, ``data: <the event as one JSON line>``;
a comment line every ``KEEPALIVE`` seconds keeps proxies and browsers from
timing the stream out. A client resuming with ``Last-Event-ID`` passes it as
``after``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from kontextd.api.web.messages import Stream
from kontextd.store.audit_sql import AuditFilter
from kontextd.store.db import Store

KEEPALIVE = 15.0
BATCH = 200


class AppendedFeed:
    """Wakes every waiting stream on ``loop`` when the store commits."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event: asyncio.Event | None = None
        store.commit_listeners.append(self._committed)

    def _committed(self) -> None:
        if self._event is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    def waiter(self) -> asyncio.Event:
        """The event the next commit sets. Take it *before* reading the store, so a
        commit between the read and the wait is not missed."""
        if self._event is None:
            self._event = asyncio.Event()
        return self._event


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """True when ``event`` was set within ``timeout`` seconds."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


def frame(event_id: int, kind: str, data: Any) -> bytes:
    """One event (HTML §9.2.6): ``data`` as one JSON line, so no newline splits it."""
    line = json.dumps(data, separators=(",", ":"))
    return f"id: {event_id}\nevent: {kind}\ndata: {line}\n\n".encode()


def events(
    feed: AppendedFeed,
    store: Store,
    after: int,
    flt: AuditFilter | None = None,
    shape: Callable[[dict[str, Any]], Any] = lambda event: event,
) -> Stream:
    """A ``text/event-stream`` of audit events after id ``after``, as they are appended."""
    return Stream(
        200,
        _follow(feed, store, after, flt or AuditFilter(), shape),
        headers=[
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )


async def _follow(
    feed: AppendedFeed,
    store: Store,
    after: int,
    flt: AuditFilter,
    shape: Callable[[dict[str, Any]], Any],
) -> AsyncIterator[bytes]:
    last = after
    yield b": kontextd event stream\n\n"  # headers reach the client at once
    while True:
        committed = feed.waiter()
        rows = store.events_after(last, BATCH, flt)
        if rows:
            last = max(int(row["id"]) for row in rows)
            yield b"".join(frame(int(row["id"]), "audit", shape(row)) for row in rows)
            continue
        if not await _wait(committed, KEEPALIVE):
            yield b": keep-alive\n\n"
