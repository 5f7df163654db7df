"""The gateway's upstream client: pooled keep-alive HTTP/1.1 on asyncio, llhttp parsing.

Why not ``httpx.AsyncClient`` for every call: measured on the gateway's own path
(bench/FINDINGS.md), its async stack (httpx, httpcore, anyio) cost about twice
the CPU of the synchronous client per call and most of the gateway's added
latency. This client does only what the gateway needs, on the same event loop
as the loopback server: one request at a time per connection, connections kept
per origin (scheme, host, port) and reused, TLS with the system's trust store
and hostname checking (``ssl.create_default_context``), the answer's head and
body parsed by llhttp (``httptools.HttpResponseParser``), and flow control both
ways. Redirects are never followed (a 3xx goes back to the caller). Where the
environment names a proxy for the upstream (``HTTPS_PROXY``, as curl reads it),
``proxy.py`` uses ``httpx.AsyncClient`` instead, which speaks CONNECT.

A connection serves one of two readers: ``Pool.request`` (a coroutine awaits the
head, then ``Response.chunks``), or a ``Sink`` (``gateway.relay``) that gets the
parser's events as plain calls and writes them on at once — no future, event or
task per call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from typing import Protocol

import httptools

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
IDLE_PER_ORIGIN = 32
BACKLOG = 256 * 1024  # answer bytes buffered before we stop reading the upstream
Origin = tuple[str, str, int]


class UpstreamError(ConnectionError):
    """The upstream could not be reached, or broke off mid-answer."""


class Sink(Protocol):
    """Takes one answer's events as they are parsed (``gateway.relay.Relay``)."""

    def upstream_head(self, conn: Connection) -> None: ...

    def upstream_body(self, chunk: bytes) -> None: ...

    def upstream_complete(self) -> None: ...

    def upstream_read(self) -> None:
        """Called after each read's events: one write for what arrived."""

    def upstream_lost(self, reason: str) -> None: ...


class Connection(asyncio.Protocol):
    """One upstream connection; its answer's head, then its body, as they arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.failure = ""  # why we closed it (a malformed answer), for the reader
        self.sink: Sink | None = None
        self.body: collections.deque[bytes] = collections.deque()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reset()

    def _reset(self) -> None:
        self.head: asyncio.Future[None] | None = None  # ``expect`` makes these for a coroutine
        self.arrived: asyncio.Event | None = None
        self.headers: list[tuple[str, str]] = []
        self.reason = ""
        self.body.clear()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False

    def expect(self) -> asyncio.Future[None]:
        """Before ``Pool.request`` sends: the future its head arrives on."""
        self.head = asyncio.get_running_loop().create_future()
        self.arrived = asyncio.Event()
        return self.head

    # -- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._writable.set()
        reason = self.failure or "the upstream closed the connection"
        if self.head is not None and not self.head.done():
            self.head.set_exception(UpstreamError(reason))
        if self.arrived is not None:
            self.arrived.set()
        if self.sink is not None:
            self.sink.upstream_lost(reason)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.failure = f"malformed answer: {exc}"
            if self.head is not None and not self.head.done():
                self.head.set_exception(UpstreamError(self.failure))
            self.close()  # a sink hears of it from connection_lost
            return
        if self.sink is not None:
            self.sink.upstream_read()

    # -- llhttp callbacks ------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.sink is not None:
            self.sink.upstream_head(self)
        elif self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, chunk: bytes) -> None:
        if self.sink is not None:
            self.sink.upstream_body(chunk)  # the sink pauses us when its reader is slow
            return
        self.body.append(chunk)
        self.buffered += len(chunk)
        if self.buffered > BACKLOG and self.transport is not None:
            self.transport.pause_reading()
        if self.arrived is not None:
            self.arrived.set()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        if self.sink is not None:
            self.sink.upstream_complete()
        elif self.arrived is not None:
            self.arrived.set()

    # -- use -------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise UpstreamError("the upstream closed the connection")
        self.transport.write(data)
        if not self._writable.is_set():
            await self._writable.wait()

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self.body:
            if self.complete:
                return None
            if self.closed:
                raise UpstreamError("the upstream's answer ended early")
            assert self.arrived is not None  # made by ``expect``
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), READ_TIMEOUT)
            except TimeoutError:
                raise UpstreamError("the upstream stopped sending") from None
        chunk = self.body.popleft()
        self.buffered -= len(chunk)
        if self.buffered <= BACKLOG // 2 and self.transport is not None and not self.closed:
            self.transport.resume_reading()
        return chunk

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """An upstream answer: status, reason, headers; ``chunks()`` streams the body once."""

    def __init__(self, pool: Pool, origin: Origin, conn: Connection, head_only: bool) -> None:
        self._pool, self._origin, self._conn = pool, origin, conn
        self.status_code = conn.parser.get_status_code()
        self.reason_phrase = conn.reason
        self.headers = conn.headers
        self._head_only = head_only
        self._done = head_only or (conn.complete and not conn.body)

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self._done:
            chunk = await self._conn.next_chunk()
            if chunk is None:
                self._done = True
                break
            yield chunk

    def take_buffered(self) -> bytes:
        """The body bytes that have arrived already (``chunks`` yields the rest)."""
        conn = self._conn
        if self._head_only or not conn.body:
            return b""
        data = b"".join(conn.body)
        conn.body.clear()
        conn.buffered = 0
        if conn.complete:
            self._done = True
        return data

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), None)

    async def aclose(self) -> None:
        """Give the connection back if the answer was read to its end, else close it."""
        conn = self._conn
        reusable = self._done and conn.complete and conn.keep_alive and not self._head_only
        if reusable and not conn.closed:
            self._pool.put(self._origin, conn)
        else:
            conn.close()


class Pool:
    """Keep-alive connections per origin, on the running loop."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[Connection]] = {}
        self._tls = ssl.create_default_context()

    def put(self, origin: Origin, conn: Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= IDLE_PER_ORIGIN or conn.transport is None:
            conn.close()
            return
        # Only a connection whose answer was read to its complete end comes back (never
        # after HEAD): llhttp is then at the start of the next message, so it is kept.
        conn._reset()
        conn.sink = None
        conn.transport.resume_reading()  # a sink may have paused it for a slow reader
        idle.append(conn)

    def take(self, origin: Origin) -> Connection | None:
        """An idle connection to ``origin`` that is still open, or None."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connection(self, origin: Origin) -> tuple[Connection, bool]:
        """(connection, reused): an idle one if any is still open, else a new one."""
        conn = self.take(origin)
        if conn is not None:
            return conn, True
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        try:
            _, fresh = await asyncio.wait_for(
                loop.create_connection(
                    Connection,
                    host,
                    port,
                    ssl=self._tls if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {type(exc).__name__}") from exc
        return fresh, False

    async def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: AsyncIterator[bytes] | None,
    ) -> Response:
        """Send one request; return once the answer's head has arrived."""
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        origin: Origin = (scheme, parts.hostname or "", port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        chunked = body is not None and not any(n.lower() == "content-length" for n, _ in headers)
        head = request_head(method, target, host, headers, chunked)
        for attempt in (1, 2):
            conn, reused = await self._connection(origin)
            try:
                arrived = conn.expect()
                await conn.send(head)
                if body is not None:
                    await _send_body(conn, body, chunked)
                await _within(arrived, READ_TIMEOUT)
                return Response(self, origin, conn, head_only=method == "HEAD")
            except (UpstreamError, TimeoutError) as exc:
                conn.close()
                # A kept-alive connection the upstream closed meanwhile: try a new one,
                # once, if nothing of a streamed body has been spent on it.
                if attempt == 1 and reused and body is None and not isinstance(exc, TimeoutError):
                    continue
                raise UpstreamError(str(exc) or "the upstream did not answer in time") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def _within(future: asyncio.Future[None], seconds: float) -> None:
    """Await ``future`` for at most ``seconds`` (a timer, lighter than ``wait_for``)."""
    if future.done():
        return future.result()
    loop = asyncio.get_running_loop()
    timer = loop.call_later(seconds, _expire, future)
    try:
        await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def request_head(
    method: str, target: str, host: str, headers: list[tuple[str, str]], chunked: bool
) -> bytes:
    """A request's head; a CR or LF inside any line (which would split it) is refused."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{n}: {v}" for n, v in headers if n.lower() != "host"]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    text = "\r\n".join(lines)
    # Joined by len(lines) - 1 CRLFs: any more CR or LF came from inside a line.
    if text.count("\r") != len(lines) - 1 or text.count("\n") != len(lines) - 1:
        raise UpstreamError("refusing to send a header with a line break")
    return (text + "\r\n\r\n").encode("latin-1")


@functools.lru_cache(maxsize=64)
def endpoint(base_url: str) -> tuple[Origin, str, str] | None:
    """(origin, Host header, path prefix) of an integration's ``base_url``; None when it
    has a query or fragment (``Pool.request`` parses such URLs itself)."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.scheme, parts.hostname or "", port), parts.netloc.rpartition("@")[2], parts.path


async def _send_body(conn: Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
    async for chunk in body:
        if chunk:
            await conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
    if chunked:
        await conn.send(b"0\r\n\r\n")


def uses_proxy(url: str) -> bool:
    """True when the environment names a proxy for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``)."""
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if parts.scheme not in proxies:
        return False
    with contextlib.suppress(Exception):
        if urllib.request.proxy_bypass(parts.hostname or ""):
            return False
    return True
