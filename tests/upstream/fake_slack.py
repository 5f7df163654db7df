"""A fake Slack Web API: ``POST /api/auth.test`` answered the way Slack answers it.

A real HTTP server on 127.0.0.1 in a thread. Slack refuses a bad token with
HTTP 200 and ``{"ok": false, "error": "invalid_auth"}``, not with a 401; a good
one gets ``{"ok": true, "user": …}``. Every request's path and Authorization
header is recorded.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "xoxb-upstreamSECRET-0123456789"  # the one token the fake accepts
USER = "kontext-slack-bot"


class FakeSlack:
    """``with FakeSlack() as slack: slack.url ...``"""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (method, path, Authorization)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeSlack:
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        fake: FakeSlack = self.server.fake  # type: ignore[attr-defined]
        auth = self.headers.get("Authorization", "")
        fake.seen.append(("POST", self.path, auth))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path != "/api/auth.test":
            body = {"ok": False, "error": "unknown_method"}
        elif auth == f"Bearer {TOKEN}":
            body = {"ok": True, "team": "Acme", "user": USER, "user_id": "U1", "team_id": "T1"}
        else:
            body = {"ok": False, "error": "invalid_auth"}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
