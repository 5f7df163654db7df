"""A one-shot loopback redirect server (RFC 8252 §7.3) for one authorization.

Bound to 127.0.0.1 on a port the kernel picks, it answers only its own
unguessable path; everything else is 404. A callback whose ``state`` (or RFC
9207 ``iss``) is wrong is ignored — answered, logged nowhere, not fatal — so a
stray or forged request cannot end or hijack the login. The waiting side blocks
on a ``threading.Event``, not a poll loop.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from kontext_cli.login.pkce import PkceSession, StateMismatch

DONE_PAGE = (
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
    server: CallbackServer

    def log_message(self, format: str, *args: Any) -> None:
        """Never log: the query string carries the code."""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path != self.server.path:
            self._send(404, "Not found")
            return
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query, max_num_fields=16).items()}
        if self.server.accept(params):
            self._send(200, "Done: kontext got the answer")
        else:
            self._send(400, "This callback is not for the login in progress")

    def _send(self, status: int, title: str) -> None:
        body = DONE_PAGE.format(title=title).encode()
        self.send_response(status)
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class CallbackServer(HTTPServer):
    """Serve one callback path on 127.0.0.1:0 in a thread; use as a context manager."""

    def __init__(self, session: PkceSession, issuer: str | None, path: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.session = session
        self.issuer = issuer
        self.path = path or "/callback/" + secrets.token_urlsafe(16)
        self.result: CallbackResult | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, name="callback", daemon=True)

    def server_bind(self) -> None:
        HTTPServer.server_bind(self)
        self.server_name = "127.0.0.1"  # skip getfqdn's reverse lookup

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.path}"

    def accept(self, params: dict[str, str]) -> bool:
        """Take the first callback with our state (and our issuer, RFC 9207)."""
        if self.done.is_set():
            return False
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
        self.done.set()
        return True

    def wait(self, timeout: float) -> CallbackResult | None:
        self.done.wait(timeout)
        return self.result

    def __enter__(self) -> CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
