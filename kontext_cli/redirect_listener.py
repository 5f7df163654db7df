"""A one-shot OAuth redirect listener on 127.0.0.1 (RFC 8252 §7.3: any port on loopback).

It answers only its own callback path (everything else is 404), accepts one
redirect, and hands the query parameters to the waiting thread through a
``threading.Event`` — no polling. The code in the redirect is never logged.
"""

from __future__ import annotations

import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any

PAGE = (
    b"<!doctype html><meta charset=utf-8><title>kontext</title>"
    b"<p>kontext received the provider's answer. You can close this tab."
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request line holds the authorization code."""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path != self.server.callback_path or self.server.done.is_set():
            self.send_error(404)
            return
        params = urllib.parse.parse_qs(query, max_num_fields=16)
        self.server.params = {k: v[0] for k, v in params.items()}
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(PAGE)
        self.server.done.set()


class _Server(HTTPServer):
    def __init__(self) -> None:
        # An unguessable path: another local page cannot aim a forged redirect at it.
        self.callback_path = f"/callback/{secrets.token_urlsafe(8)}"
        self.params: dict[str, str] = {}
        self.done = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        import socketserver

        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup


class RedirectListener:
    """``with RedirectListener() as r: ... r.wait(timeout)`` → the redirect's parameters."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def redirect_uri(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}{self._server.callback_path}"

    def __enter__(self) -> RedirectListener:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> dict[str, str] | None:
        """The redirect's query parameters, or None if none came in time."""
        if not self._server.done.wait(timeout):
            return None
        return dict(self._server.params)
