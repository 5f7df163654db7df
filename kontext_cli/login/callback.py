"""The CLI's one-shot loopback redirect servers (RFC 8252 §7.3: any port on loopback).

Bound to 127.0.0.1 on a port the kernel picks, a server answers only its own
callback path; everything else is 404. ``RedirectServer.offer`` decides whether
a callback is the one awaited: ``CallbackServer`` (login and agent consent)
takes only the first with this login's ``state`` and RFC 9207 ``iss`` — a stray
or forged one is answered, logged nowhere and not fatal — and
``ProviderRedirect`` (``kontext integration connect``) the first on its path
(the daemon checks that one's ``state``). The waiting side blocks on a
``threading.Event``, not a poll loop.

Connections cannot hold the login up: each is served on a thread of its own,
each must finish its request within ``REQUEST_DEADLINE`` (a sweep on the serving
thread closes the laggards), at most ``MAX_CONNECTIONS`` are open at once (the
oldest gives way), and leaving the ``with`` block closes whatever is still open,
so an idle connection neither blocks the browser's callback nor makes the CLI
overrun its ``--timeout``. ``admit_connection`` is the single place a
connection is let in.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from kontext.common import peeruid
from kontext_cli.login.pkce import PkceSession, StateMismatch

REQUEST_DEADLINE = 10.0  # seconds from accept() to a complete request
MAX_CONNECTIONS = 32
SWEEP_INTERVAL = 0.25  # how often the serving thread closes connections past their deadline

PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>kontext</title></head>'
    "<body><h1>{title}</h1><p>You can close this tab and return to the terminal.</p></body></html>"
)
HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


class CallbackResult:
    """The accepted callback: a code, or an error the issuer sent back."""

    __slots__ = ("code", "error", "error_description")

    def __init__(self, code: str | None, error: str | None, description: str | None) -> None:
        self.code = code
        self.error = error
        self.error_description = description

    def __repr__(self) -> str:
        return f"CallbackResult(error={self.error!r}, code=<redacted>)"


class _Handler(BaseHTTPRequestHandler):
    server: RedirectServer
    timeout = REQUEST_DEADLINE  # per read; the sweep bounds the whole request

    def log_message(self, format: str, *args: Any) -> None:
        """Never log: the query string carries the code."""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path != self.server.path:
            self._send(404, "Not found")
            return
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query, max_num_fields=16).items()}
        if not self.server.claim(params):
            self._send(400, "This callback is not for the login in progress")
            return
        # Only once the page is written is the waiting side woken: it then leaves its
        # ``with`` block, which hangs up every open connection, and a page cut off
        # mid-body shows the user a browser error (ERR_CONTENT_LENGTH_MISMATCH)
        # instead of "Done", although the login went through.
        try:
            self._send(200, "Done: kontext got the answer")
        finally:
            self.server.forget(self.connection)
            self.server.done.set()

    def _send(self, status: int, title: str) -> None:
        body = PAGE.format(title=title).encode()
        self.send_response(status)
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class RedirectServer(ThreadingHTTPServer):
    """Serve one callback path on 127.0.0.1:0; use as a context manager, then ``wait``."""

    daemon_threads = True  # a connection still open at exit never holds the CLI up
    block_on_close = False

    def __init__(self, path: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.path = path or "/callback/" + secrets.token_urlsafe(16)
        self.done = threading.Event()  # set once the claimed callback's page is written
        self._claimed = False
        self._open: dict[socket.socket, float] = {}  # connection -> its deadline (monotonic)
        self._open_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.serve_forever, args=(SWEEP_INTERVAL,), name="callback", daemon=True
        )

    def server_bind(self) -> None:
        ThreadingHTTPServer.server_bind(self)
        self.server_name = "127.0.0.1"  # skip getfqdn's reverse lookup

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.path}"

    # -- connections ------------------------------------------------------------

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.admit_connection(request, client_address)

    def admit_connection(self, conn: socket.socket, address: tuple[str, int]) -> bool:
        """Let one accepted connection in (True) or close it at once (False).

        Every connection passes here, on the serving thread, before a byte of it
        is read. It gets ``REQUEST_DEADLINE`` seconds; past ``MAX_CONNECTIONS``
        the oldest open one is closed to make room, so no number of idle
        connections can keep the browser's callback out. Only this OS user's
        connections are let in at all: the authorize URL (and so this callback's
        address) is in the browser's argv, readable by every user on the machine.
        """
        if not peeruid.own_user(conn):
            return False
        with self._open_lock:
            if len(self._open) >= MAX_CONNECTIONS:
                oldest = min(self._open, key=self._open.__getitem__)
                _hang_up(oldest)
                del self._open[oldest]
            self._open[conn] = time.monotonic() + REQUEST_DEADLINE
        return True

    def forget(self, conn: socket.socket) -> None:
        """Stop tracking ``conn``: neither the sweep nor leaving the block hangs it up."""
        with self._open_lock:
            self._open.pop(conn, None)

    def shutdown_request(self, request: Any) -> None:
        self.forget(request)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Called by ``serve_forever`` every ``SWEEP_INTERVAL``: end overdue connections."""
        now = time.monotonic()
        with self._open_lock:
            for conn in [c for c, deadline in self._open.items() if deadline < now]:
                _hang_up(conn)
                del self._open[conn]

    # -- the callback -----------------------------------------------------------

    def claim(self, params: dict[str, str]) -> bool:
        """Hand a callback to ``offer`` once; True if it was the one awaited.

        The caller answers the browser and then sets ``done``, which wakes ``wait``."""
        with self._open_lock:  # two racing callbacks: exactly one is claimed
            if self._claimed or not self.offer(params):
                return False
            self._claimed = True
        return True

    def offer(self, params: dict[str, str]) -> bool:
        """Is this the awaited callback? Keep what is needed from it. (Subclasses.)"""
        raise NotImplementedError

    # -- life -------------------------------------------------------------------

    def __enter__(self) -> Self:
        with signals_to_main_thread():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        with self._open_lock:
            for conn in self._open:
                _hang_up(conn)
            self._open.clear()
        self._thread.join(timeout=5)


class CallbackServer(RedirectServer):
    """Login and consent: the first callback with our ``state`` (and ``iss``, RFC 9207)."""

    def __init__(self, session: PkceSession, issuer: str | None, path: str | None = None) -> None:
        super().__init__(path)
        self.session = session
        self.issuer = issuer
        self.result: CallbackResult | None = None

    def offer(self, params: dict[str, str]) -> bool:
        try:
            self.session.check_state(params.get("state"))
        except StateMismatch:
            return False
        iss = params.get("iss")
        if self.issuer is not None and (
            iss is None or not hmac.compare_digest(iss.encode(), self.issuer.encode())
        ):
            return False
        self.result = CallbackResult(
            params.get("code"), params.get("error"), params.get("error_description")
        )
        return True

    def wait(self, timeout: float) -> CallbackResult | None:
        """The accepted callback, or None if none came within ``timeout`` seconds."""
        self.done.wait(timeout)
        return self.result


class ProviderRedirect(RedirectServer):
    """``integration connect``: the first callback on the path (the daemon checks its state)."""

    def __init__(self) -> None:
        super().__init__()
        self.params: dict[str, str] = {}

    def offer(self, params: dict[str, str]) -> bool:
        self.params = params
        return True

    def wait(self, timeout: float) -> dict[str, str] | None:
        """The redirect's query parameters, or None if none came in time."""
        if not self.done.wait(timeout):
            return None
        return dict(self.params)


def _hang_up(conn: socket.socket) -> None:
    """Wake the thread reading ``conn`` (it sees EOF and ends); it closes the socket."""
    with contextlib.suppress(OSError):  # already gone
        conn.shutdown(socket.SHUT_RDWR)


@contextmanager
def signals_to_main_thread() -> Iterator[None]:
    """Start threads with SIGINT and SIGTERM blocked, so the kernel delivers a Ctrl-C to
    the main thread, whose wait it interrupts (a signal taken by another thread would
    leave the main thread waiting until its timeout)."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
