"""What a loopback connection hands out for streamed traffic.

``BodyStream`` is a request body read as it arrives (the gateway streams it
upstream); ``Relayed`` is what a connection tells a request answered from
callbacks rather than a task. Kept apart from ``connection`` so that module
stays about parsing and limits.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Protocol

from kontextd.api.web.messages import Request


class _Reader(Protocol):
    """The connection side of a body stream: told when buffered bytes were taken,
    so it can resume reading (TCP flow control, ``BODY_BACKLOG``)."""

    def body_drained(self) -> None: ...


class BodyStream:
    """A streamed request body: chunks in arrival order, ``None`` at the end."""

    def __init__(self, conn: _Reader, request: Request) -> None:
        self._conn = conn
        self._request = request
        self._queue: collections.deque[bytes | None] = collections.deque()
        self._ready = asyncio.Event()
        self.buffered = 0
        self.failed = False

    def put(self, chunk: bytes | None) -> None:
        self._queue.append(chunk)
        self.buffered += len(chunk or b"")
        self._ready.set()

    def fail(self) -> None:
        self.failed = True
        self.put(None)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        chunk = self._queue.popleft()
        if chunk is None:
            if self.failed:
                raise ConnectionError("the caller closed mid-body")
            self._request.body_used = True  # read to its end: the connection stays usable
            raise StopAsyncIteration
        self.buffered -= len(chunk)
        self._conn.body_drained()
        return chunk


class Relayed(Protocol):
    """A request answered from callbacks rather than a task (``gateway.relay``): told
    when the caller's side pauses or resumes taking bytes, goes away, or its deadline
    (``wait_for_upstream``) passes. The connection forgets it when it is done."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def lost(self) -> None: ...

    def expired(self) -> None: ...
