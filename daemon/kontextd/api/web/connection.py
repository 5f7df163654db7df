"""One loopback TCP connection: llhttp (httptools) parses, this class keeps the limits.

The parser does HTTP/1.1 itself — request line, headers, Content-Length and
chunked framing — and refuses what RFC 9112 calls ambiguous: duplicate or
non-numeric ``Content-Length`` (§6.3), ``Transfer-Encoding`` with
``Content-Length``, obsolete line folding, whitespace before a colon. Any parse
error ends the connection after one 400, so no byte of a refused request is ever
read as another request.

Limits kept here, per connection:

- a whole request head must arrive within ``HEAD_DEADLINE`` seconds of its first
  byte and fit in ``HEAD_BUDGET`` bytes (slow-loris and header floods), and a
  buffered body within ``BODY_DEADLINE`` of its head (one trickled a byte at a
  time held a connection for ever); a connection idle between requests is
  closed after ``IDLE_LIMIT``;
- a buffered body over ``wire.MAX_BODY`` is 413 and the connection ends;
- requests are answered in order, one at a time (pipelined ones wait, reading
  pauses), and a streamed body or answer follows TCP flow control both ways.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from typing import TYPE_CHECKING

import httptools

from kontext.common import peeruid, wire
from kontextd.api.web import wireformat
from kontextd.api.web.bodystream import BodyStream, Relayed
from kontextd.api.web.messages import Headers, Peer, Request, Response, Stream, error_response
from kontextd.errors import ApiError

if TYPE_CHECKING:
    from kontextd.api.web.server import HttpServer

log = logging.getLogger("kontextd.loopback")

HEAD_DEADLINE = 10.0
HEAD_BUDGET = 64 * 1024
BODY_DEADLINE = 10.0  # a buffered body is at most wire.MAX_BODY (64 KiB) on loopback
MAX_HEADERS = 100
IDLE_LIMIT = 30.0
BODY_BACKLOG = 256 * 1024  # streamed request bytes buffered before reading pauses


class _Refused(Exception):
    """Raised from a parser callback: answer ``status`` with ``reason`` and hang up."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.error = ApiError(code, reason)
        self.status = status


class HttpConnection(asyncio.Protocol):
    """Parses requests off one connection and hands them, in order, to the server."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.uid: int | None = None
        self.peer: Peer | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[Request] = collections.deque()
        self.active = False
        self.closing = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._pauses: set[str] = set()
        # One deadline at a time (idle, or the head's), checked by the server's sweep
        # once a second: a timer per request cost more than parsing the request.
        self.deadline: float | None = None
        self._why = ""
        self.task: asyncio.Task[None] | None = None  # the handler or stream of this request
        self.relay: Relayed | None = None  # or what answers it from callbacks
        self._reset_message()

    def _reset_message(self) -> None:
        self.in_head = False
        self._url = b""
        self._pairs: list[tuple[str, str]] = []
        self._head_size = 0
        self._raw_head = 0
        self._request: Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._stream: BodyStream | None = None

    # -- transport events ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # asyncio sets this only for sockets created with proto=IPPROTO_TCP; ours have
            # proto 0. Without it, a head and body in two writes wait on a delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer, ours = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        facts = peeruid.peer_socket(peer[:2], ours[:2]) if sock is not None else None
        self.uid = None if facts is None else facts[0]
        self.peer = Peer(self.uid, None if facts is None else facts[1])
        if not self.server.admit(self):
            self.closing = True
            transport.abort()
            return
        self._arm(IDLE_LIMIT, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._clear_deadline()
        self._writable.set()  # wake a writer: it sees ``closing``
        if self._stream is not None:
            self._stream.fail()
        if self.task is not None and not self.task.done():
            self.task.cancel()  # e.g. an event stream waiting for the next commit
        if self.relay is not None:
            self.relay.lost()
        self.server.release(self)

    def pause_writing(self) -> None:
        self._writable.clear()
        if self.relay is not None:
            self.relay.pause()

    def resume_writing(self) -> None:
        self._writable.set()
        if self.relay is not None:
            self.relay.resume()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.in_head or self._request is None:
            self._raw_head += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self.refuse(refused.error, status=refused.status)
            else:  # a bug in our callback code: one answer, the traceback in the log
                log.error("loopback request failed", exc_info=refused)
                self.refuse(ApiError(wire.INTERNAL, "internal error; see the daemon log"))
        except httptools.HttpParserUpgrade:
            self.refuse(ApiError(wire.INVALID, "CONNECT and protocol upgrades are not served"))
        except httptools.HttpParserError as exc:
            self.refuse(ApiError(wire.INVALID, f"malformed request: {str(exc)[:80]}"))
        else:
            if self.in_head and self._raw_head > HEAD_BUDGET:
                self.refuse(ApiError(wire.TOO_LARGE, "request head too large"), status=431)

    # -- parser callbacks (httptools) ------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_head = True
        self._arm(HEAD_DEADLINE, "head")

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._pairs) >= MAX_HEADERS:
            raise _Refused(431, wire.TOO_LARGE, "too many header fields")
        self._count(len(name) + len(value) + 4)
        self._pairs.append((name.decode("latin-1"), value.decode("latin-1")))

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._head_size > HEAD_BUDGET:
            raise _Refused(431, wire.TOO_LARGE, "request head too large")

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._clear_deadline()
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Refused(505, wire.INVALID, "only HTTP/1.1 and HTTP/1.0 are served")
        method = self.parser.get_method().decode("ascii", "replace")
        target = self._url.decode("latin-1")
        request = Request(method, target, version, Headers(self._pairs), self.uid, self.peer)
        request.close = not self.parser.should_keep_alive()
        self._request = request
        self.server.classify(self, request)
        if request.route is not None and request.route.streaming and self.announces_body(request):
            # Only a body that was announced streams; a request without one is
            # ready at its end like any other (the gateway's fast path takes those).
            self._stream = BodyStream(self, request)
            request.chunks = self._stream
            self._ready(request)
        elif self._declared_length() > wire.MAX_BODY:
            raise _Refused(413, wire.TOO_LARGE, f"request body over {wire.MAX_BODY} bytes")
        elif not self.active and self.announces_body(request):
            self._arm(BODY_DEADLINE, "body")

    def _declared_length(self) -> int:
        length = (self._request.headers.get("Content-Length") if self._request else None) or "0"
        return int(length) if length.isdigit() else 0  # llhttp already refused anything else

    def on_body(self, chunk: bytes) -> None:
        if self._stream is not None:
            self._stream.put(chunk)
            if self._stream.buffered > BODY_BACKLOG:
                self._pause("body")
            return
        self._body_size += len(chunk)
        if self._body_size > wire.MAX_BODY:
            raise _Refused(413, wire.TOO_LARGE, f"request body over {wire.MAX_BODY} bytes")
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        request, stream, body = self._request, self._stream, self._body
        assert request is not None
        if self.deadline is not None and self._why == "body":
            self._clear_deadline()
        # Reset first: a handler may answer at once, and then the idle deadline is armed.
        self._reset_message()
        if stream is not None:
            stream.put(None)
        else:
            request.body = b"".join(body)
            self._ready(request)

    # -- requests, in order ---------------------------------------------------------

    def _ready(self, request: Request) -> None:
        self.queue.append(request)
        if self.active or len(self.queue) > 1:
            self._pause("pipelined")  # answers go out in order: read no further for now
        self._next()

    def _next(self) -> None:
        if self.active or not self.queue or self.closing:
            return
        self.active = True
        self._clear_deadline()
        self.server.dispatch(self, self.queue.popleft())

    def finished(self, close: bool) -> None:
        """The current answer is out: hang up, or take the next request."""
        self.active = False
        if close or self.closing:
            self.close()
            return
        if self.queue:
            self._next()
            return
        self._resume("pipelined")
        if not self.in_head and self._request is None:
            self._arm(IDLE_LIMIT, "idle")

    def body_drained(self) -> None:
        if self._stream is not None and self._stream.buffered <= BODY_BACKLOG // 2:
            self._resume("body")

    # -- writing ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is full (the reader is slower than us)."""
        if not self._writable.is_set():
            await self._writable.wait()
        if self.closing:
            raise ConnectionError("the caller went away")

    def send(self, request: Request, response: Response) -> None:
        """Write a complete answer and move on (``finished``)."""
        close = self.must_close(request, response.close)
        head_only = request.method == "HEAD"
        head = wireformat.head(response.status, response.header_lines(), len(response.body), close)
        self.write(head if head_only else head + response.body)
        self.finished(close)

    async def send_stream(self, request: Request, stream: Stream) -> None:
        """Write a streamed answer, chunk by chunk, at the pace the reader takes it."""
        close = self.must_close(request, stream.close)
        chunked = stream.length is None and not stream.head_only
        head = wireformat.stream_head(
            stream.status, stream.reason, stream.headers, stream.length, close, chunked
        )
        # Body bytes already at hand go out with the head: one write, one wake-up.
        first = stream.prefix if not stream.head_only else b""
        self.write(head + (wireformat.chunk(first) if chunked and first else first))
        try:
            if not stream.head_only:
                async for chunk in stream.chunks:
                    if chunk:
                        self.write(wireformat.chunk(chunk) if chunked else chunk)
                        await self.drain()
                if chunked:
                    self.write(wireformat.LAST_CHUNK)
        except Exception:
            close = True  # a short answer: the caller must see the connection end
            raise
        finally:
            closer = getattr(stream.chunks, "aclose", None)
            if closer is not None:
                with contextlib.suppress(RuntimeError):  # already closing: cancelled inside
                    await closer()
            self.finished(close)

    def must_close(self, request: Request, asked: bool) -> bool:
        """Close after this answer? Asked by the handler or the client, HTTP/1.0 without
        keep-alive, stopping, or a body the handler never read (it would have been
        refused unread)."""
        unread = bool(request.body or self.announces_body(request)) and not request.body_used
        return asked or request.close or unread or self.server.stopping

    @staticmethod
    def announces_body(request: Request) -> bool:
        """Did the request announce a body? (A streamed one not read to its end, e.g. a
        refused gateway call, ends the connection too: its bytes may still be coming.)"""
        length = request.headers.get("Content-Length")
        chunked = "Transfer-Encoding" in request.headers
        return chunked or (length is not None and length.strip() not in ("", "0"))

    def refuse(self, error: ApiError, status: int | None = None) -> None:
        """Answer a request we could not parse or accept, then hang up."""
        self.closing_after_error(error_response(error), status)

    def closing_after_error(self, response: Response, status: int | None) -> None:
        if status is not None:
            response.status = status
        if self.transport is None or self.closing:
            return
        self._clear_deadline()
        if not self.active:
            self.write(
                wireformat.head(response.status, response.header_lines(), len(response.body), True)
            )
            self.write(response.body)
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self._clear_deadline()
            self.transport.close()

    # -- timers and reading --------------------------------------------------------

    def _arm(self, seconds: float, why: str) -> None:
        self.deadline = time.monotonic() + seconds
        self._why = why

    def _clear_deadline(self) -> None:
        self.deadline = None

    def expire_if_due(self, now: float) -> None:
        """Called by the server's sweep: act on a deadline that has passed."""
        if self.deadline is not None and self.deadline <= now:
            self._expired(self._why)

    def wait_for_upstream(self, seconds: float) -> None:
        """The relay's deadline (``Relayed.expired``), checked by the sweep like ours."""
        self._arm(seconds, "relay")

    def _expired(self, why: str) -> None:
        self.deadline = None
        if why == "relay" and self.relay is not None:
            self.relay.expired()
        elif why == "head" and self.in_head and not self.active:
            self.refuse(ApiError(wire.INVALID, "the request head took too long"), status=408)
        elif why == "body" and self._request is not None and not self.active:
            self.refuse(ApiError(wire.INVALID, "the request body took too long"), status=408)
        else:
            self.close()

    def _pause(self, why: str) -> None:
        if not self._pauses and self.transport is not None:
            self.transport.pause_reading()
        self._pauses.add(why)

    def _resume(self, why: str) -> None:
        self._pauses.discard(why)
        if not self._pauses and self.transport is not None and not self.closing:
            self.transport.resume_reading()
