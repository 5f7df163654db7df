"""A fake GitHub: REST routes with JSON bodies, large streamed responses, OAuth endpoints.

A real HTTP server on 127.0.0.1 in a thread. It accepts only the credentials it
issued (an API key, or access tokens from its token endpoint) and records every
request's method, path and headers, so tests can prove what reached the upstream.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "ghp_upstreamSECRET0123456789abcdefABCDEF"  # the fake upstream's own key
CLIENT_ID = "Iv1.kontexttest"
LOGIN = "kontext-bot"  # the account the fake's credentials belong to
PULL_COUNT = 5  # pull requests in every repository's paginated listing
BLOCK = hashlib.sha256(b"kontext").digest() * 2048  # 64 KiB of deterministic bytes


def big_body(size: int) -> bytes:
    return (BLOCK * (size // len(BLOCK) + 1))[:size]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body_size: int = 0


@dataclass
class OAuthState:
    """The provider's side of OAuth: codes, tokens and switches a test flips."""

    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (challenge, redirect)
    refresh_tokens: set[str] = field(default_factory=set)
    access_expires_in: int = 3600
    refuse_refresh: bool = False
    grants: list[str] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    # A real API's listen backlog, not http.server's 5: with 32 clients connecting
    # at once the kernel dropped SYNs past the 5th and each retried a second later,
    # which put ~0.8 s into the p99 of every wrk run against this stand-in, direct
    # and through the gateway alike (bench figure 7c).
    request_queue_size = 128


class FakeGitHub:
    """``with FakeGitHub() as gh: gh.url ...``"""

    def __init__(self) -> None:
        self.valid_tokens: set[str] = {API_KEY}
        self.seen: list[Seen] = []
        self.reviews: list[dict[str, Any]] = []
        self.oauth = OAuthState()
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGitHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def api_calls(self) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith("/repos/")]

    def issue_tokens(self) -> dict[str, Any]:
        access, refresh = "gho_" + secrets.token_hex(16), "ghr_" + secrets.token_hex(16)
        with self.lock:
            self.valid_tokens.add(access)
            self.oauth.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.oauth.access_expires_in,
            "refresh_token": refresh,
            "scope": "repo",
        }


PULL = re.compile(r"/repos/([^/]+)/([^/]+)/pulls/(\d+)")
PULLS = re.compile(r"/repos/([^/]+)/([^/]+)/pulls")
REVIEWS = re.compile(r"/repos/([^/]+)/([^/]+)/pulls/(\d+)/reviews")
BIG = re.compile(r"/repos/([^/]+)/([^/]+)/contents/big")
UPLOAD = re.compile(r"/repos/([^/]+)/([^/]+)/contents/(.+)")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeGitHub:
        return self.server.fake  # type: ignore[no-any-return]

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-GitHub-Request-Id", "F00D:1")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        path, _, query = self.path.partition("?")
        body = self._read_body()
        with self.fake.lock:
            self.fake.seen.append(Seen(self.command, self.path, dict(self.headers), len(body)))
        if path == "/login/oauth/authorize":
            return self._authorize(query)
        if path == "/login/oauth/access_token":
            return self._token(body)
        auth = self.headers.get("Authorization", "")
        if auth.partition(" ")[2] not in self.fake.valid_tokens:
            return self._json(401, {"message": "Bad credentials"})
        return self._api(path, query, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def _api(self, path: str, query: str, body: bytes) -> None:
        if self.command == "GET" and path == "/user":  # who a token belongs to (gh auth)
            return self._json(200, {"login": LOGIN, "id": 1, "type": "User"})
        if self.command == "POST" and (m := REVIEWS.fullmatch(path)):
            review = {"id": len(self.fake.reviews) + 1, "state": "COMMENTED", **json.loads(body)}
            self.fake.reviews.append(review)
            return self._json(200, review)
        if self.command == "GET" and path.endswith("/moved"):  # a renamed repository
            return self._json(
                301,
                {"message": "Moved Permanently"},
                {"Location": self.fake.url + path.removesuffix("/moved")},
            )
        if self.command in ("GET", "HEAD") and (m := PULL.fullmatch(path)):
            return self._json(
                200,
                {
                    "number": int(m.group(3)),
                    "title": "Add the gateway",
                    "user": {"login": "octocat"},
                    "state": "open",
                    "base": {"repo": {"full_name": f"{m.group(1)}/{m.group(2)}"}},
                },
                {"ETag": '"abc123"', "X-RateLimit-Remaining": "4999"},
            )
        if self.command == "GET" and (m := PULLS.fullmatch(path)):
            return self._pull_page(m.group(1), m.group(2), query)
        if self.command == "GET" and BIG.fullmatch(path):
            return self._stream(int(urllib.parse.parse_qs(query).get("size", ["1048576"])[0]))
        if self.command == "PUT" and UPLOAD.fullmatch(path):
            return self._json(201, {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})
        if self.command == "POST" and path.endswith("/issues"):
            return self._json(201, {"number": 7})
        return self._json(404, {"message": "Not Found"})

    def _pull_page(self, owner: str, repo: str, query: str) -> None:
        """``GET /repos/O/R/pulls``: PULL_COUNT pull requests, paginated as GitHub does —
        absolute upstream URLs in ``Link`` (RFC 8288) and in each item's ``url``."""
        params = dict(urllib.parse.parse_qsl(query))
        page, per_page = int(params.get("page", "1")), int(params.get("per_page", "2"))
        base = f"{self.fake.url}/repos/{owner}/{repo}/pulls"
        first = (page - 1) * per_page + 1
        numbers = range(first, min(first + per_page, PULL_COUNT + 1))
        items = [{"number": n, "url": f"{base}/{n}"} for n in numbers]
        last = (PULL_COUNT + per_page - 1) // per_page
        links = [f'<{base}?page={page + 1}&per_page={per_page}>; rel="next"'] if page < last else []
        links.append(f'<{base}?page={last}&per_page={per_page}>; rel="last"')
        self._json(200, items, {"Link": ", ".join(links)})

    def _stream(self, size: int) -> None:
        """A large body sent chunked, as GitHub streams archives and logs."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        data = big_body(size)
        for start in range(0, size, 32768):
            piece = data[start : start + 32768]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    # -- OAuth (the provider side) --------------------------------------------

    def _authorize(self, query: str) -> None:
        """The provider's consent step: the user is signed in and approves at once."""
        q = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
        assert q["client_id"] == CLIENT_ID and q["code_challenge_method"] == "S256"
        code = "code_" + secrets.token_hex(8)
        self.fake.oauth.codes[code] = (q["code_challenge"], q["redirect_uri"])
        target = (
            q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]})
        )
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _token(self, body: bytes) -> None:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        oauth = self.fake.oauth
        oauth.grants.append(form.get("grant_type", ""))
        if form.get("client_id") != CLIENT_ID:
            return self._json(401, {"error": "invalid_client"})
        if form.get("grant_type") == "authorization_code":
            challenge, redirect = oauth.codes.pop(form.get("code", ""), ("", ""))
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not challenge or computed != challenge or form.get("redirect_uri") != redirect:
                return self._json(400, {"error": "invalid_grant"})
            return self._json(200, self.fake.issue_tokens())
        if form.get("grant_type") == "refresh_token":
            old = form.get("refresh_token", "")
            if oauth.refuse_refresh or old not in oauth.refresh_tokens:
                return self._json(
                    400,
                    {"error": "invalid_grant", "error_description": "The refresh token is revoked"},
                )
            oauth.refresh_tokens.discard(old)  # rotation: the old one is dead now
            return self._json(200, self.fake.issue_tokens())
        return self._json(400, {"error": "unsupported_grant_type"})


if __name__ == "__main__":  # for bench/gateway_bench.py: serve in a process of its own
    import sys

    with FakeGitHub() as served:
        print(served.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
