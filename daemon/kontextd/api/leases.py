"""exec's lease requests on the control socket: parsed, answered and written as bytes.

``control_loop`` owns the sockets; this module owns what one connection says.
``parse`` takes a request from a connection's buffer only when it is exactly one
of the three lease requests with a plain ``Content-Length`` body — anything else
is left to ``ControlHandler`` on a thread. ``LeaseConnection.answer`` runs the
request (``credentials``) and returns the response bytes, written the way
``JsonHandler.send_json`` writes them.
"""

from __future__ import annotations

import email.utils
import io
import json
import selectors
import socket
import time
from http import HTTPStatus
from typing import Any

from kontext.common import wire
from kontextd import credentials, exec_tree
from kontextd.api import http11
from kontextd.api.control import ControlHandler
from kontextd.api.gate import Gate
from kontextd.api.httpbase import api_error, json_body
from kontextd.callers import Caller
from kontextd.core import Core
from kontextd.errors import ApiError, invalid

MAX_HEAD = http11.MAX_LINE  # a longer head goes to a thread, which answers 431
FAST_ROUTES = frozenset(
    {
        ("POST", "/v1/credentials"),
        ("POST", "/v1/lease/child"),
        ("POST", "/v1/lease/release"),
    }
)
# Headers the loop does not interpret; a request carrying one goes to a thread.
HANDOFF_HEADERS = ("transfer-encoding", "expect")
REASONS = {s.value: s.phrase for s in HTTPStatus}
EXTRA_HEADERS = (
    b"Content-Type: application/json\r\nCache-Control: no-store\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
)


_DATE: list[Any] = [-1, b""]  # (second, the Date header's value for it)


def _date() -> bytes:
    """The Date header's IMF-fixdate (RFC 9110 §5.6.7), formatted once a second."""
    now = int(time.time())
    if now != _DATE[0]:
        _DATE[:] = [now, email.utils.formatdate(now, usegmt=True).encode()]
    value: bytes = _DATE[1]
    return value


def response(status: int, body: Any, *, close: bool) -> bytes:
    """One HTTP/1.1 JSON answer, headers as ``JsonHandler.send_json`` writes them."""
    data = json.dumps(body, separators=(",", ":")).encode()
    head = b"HTTP/1.1 %d %s\r\nServer: kontextd\r\nDate: %s\r\n%sContent-Length: %d\r\n%s\r\n" % (
        status,
        REASONS.get(status, "").encode(),
        _date(),
        EXTRA_HEADERS,
        len(data),
        b"Connection: close\r\n" if close else b"",
    )
    return head + data


def error_response(exc: ApiError, *, close: bool) -> bytes:
    return response(exc.status, {"error": {"code": exc.code, "message": exc.message}}, close=close)


class Request:
    """A complete request the loop answers itself."""

    __slots__ = ("body", "close", "path", "size")

    def __init__(self, path: str, body: bytes, close: bool, size: int) -> None:
        self.path, self.body, self.close, self.size = path, body, close, size


def parse(buf: bytearray) -> Request | bool:
    """The first request in ``buf``: a ``Request`` when the loop answers it, True to
    hand the connection to a thread, False when more bytes are needed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return len(buf) > MAX_HEAD
    lines = bytes(buf[:end]).split(b"\r\n")
    try:
        method, target, version = http11.request_line(lines[0])
        headers = http11.read_headers(io.BytesIO(b"\r\n".join(lines[1:]) + b"\r\n\r\n"))
    except http11.HeadError:
        return True  # the thread's parser says what is wrong, as on every route
    path = target.partition("?")[0]
    if (method, path) not in FAST_ROUTES or any(h in headers for h in HANDOFF_HEADERS):
        return True
    length = headers.get("Content-Length") or ""
    if not length.isdigit() or int(length) > wire.MAX_BODY:
        return True
    size = end + 4 + int(length)
    if len(buf) < size:
        return False
    connection = (headers.get("Connection") or "").lower()
    close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
    return Request(path, bytes(buf[end + 4 : size]), close, size)


class LeaseConnection:
    """One client connection while the loop owns it."""

    __slots__ = (
        "before",
        "buf",
        "caller",
        "closing",
        "gate",
        "leases",
        "mask",
        "outbox",
        "pid",
        "reason",
        "since",
        "sock",
    )

    def __init__(self, sock: socket.socket, pid: int | None, gate: Gate) -> None:
        self.sock = sock
        self.pid = pid
        self.gate = gate
        self.caller: Caller | None = None  # classified at the first request that needs it
        self.buf = bytearray()
        self.outbox = b""
        self.leases: list[str] = []
        self.reason = ControlHandler.lease_reason
        self.since = time.monotonic()
        self.closing = False
        self.mask = selectors.EVENT_READ
        # The leases held before this batch's answers: what stays if its commit fails.
        self.before: list[str] | None = None

    def answer(self, core: Core, req: Request) -> bytes:
        """Run one lease request; errors become the same JSON lines as on every route."""
        try:
            status, body = self._route(core, req)
        except Exception as exc:
            return error_response(api_error(exc, f"POST {req.path}"), close=req.close)
        return response(status, body, close=req.close)

    def _route(self, core: Core, req: Request) -> tuple[int, Any]:
        body = json_body(req.body)
        if req.path == "/v1/credentials":
            if self.caller is None:
                self.caller = self.gate.caller(self.pid)
            self.gate.check(self.caller, "POST", req.path)
            jti, issued = credentials.issue_for_exec(core, body, self.pid)
            self.leases.append(jti)
            core.trees.add(jti, str(issued["agent"]), self.pid)
            return 201, issued
        if not self.leases:
            raise invalid("this connection holds no credential")
        if req.path == "/v1/lease/child":
            exec_tree.record_child(core, self.leases[-1], body, self.pid)
            return 200, {"ok": True}
        self.reason = credentials.release_reason(body.get("status"))
        for jti in self.leases:
            credentials.end(core, jti, "revoked", self.reason)
        core.trees.drop(self.leases)  # the wrapper reaped its whole tree before releasing
        self.leases.clear()
        return 200, {"released": True}
