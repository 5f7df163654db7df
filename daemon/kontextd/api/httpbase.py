"""A small JSON request handler on the standard library's HTTP server.

Routing is a table of (method, regex) → handler method. Bodies are read with a
hard size limit; errors are one JSON line with a wire code. ``log_message`` is
overridden: the default writes the request line, query string and all, to stderr.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

from kontext.common import parsing, wire
from kontextd.api import http11
from kontextd.errors import ApiError, invalid

log = logging.getLogger("kontextd.http")

Route = tuple[str, re.Pattern[str], str]


def route(method: str, pattern: str, handler: str) -> Route:
    return (method, re.compile(pattern), handler)


def api_error(exc: Exception, where: str) -> ApiError:
    """The error to answer with for an exception from a handler: its own ApiError, a
    ValueError (parse limits and the like) as ``invalid``; anything else is a bug,
    logged with its traceback and answered only as ``internal``."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValueError):
        return invalid(f"bad request: {str(exc)[:120]}")
    log.exception("internal error on %s", where)
    return ApiError(wire.INTERNAL, "internal error; see the daemon log")


def json_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object (empty means ``{}``); one ``invalid`` line otherwise."""
    if not raw:
        return {}
    try:
        value = parsing.json_loads(raw)  # depth-limited: deep nesting is one line, not a 500
    except ValueError as exc:  # bad JSON, not UTF-8, or parsing.TooDeep
        raise invalid(f"body is not valid JSON: {str(exc)[:120]}") from exc
    if not isinstance(value, dict):
        raise invalid("body must be a JSON object")
    return value


class JsonHandler(BaseHTTPRequestHandler):
    """Dispatches by ``ROUTES``; subclasses add handlers and access checks."""

    protocol_version = "HTTP/1.1"
    server_version = "kontextd"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    timeout = 30  # idle connections are closed (slow clients cannot pin a thread forever)
    ROUTES: ClassVar[list[Route]] = []
    extra_headers: ClassVar[dict[str, str]] = {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }

    def log_message(self, format: str, *args: Any) -> None:
        """Log method, path (never the query string) and status at debug level."""
        path = self.path.split("?", 1)[0] if isinstance(getattr(self, "path", None), str) else "-"
        # The method is whatever the client sent first on the line (a token, even): cap it.
        method = str(getattr(self, "command", None) or "-")[:16]
        log.debug("%s %s %s", method, path[:200], args[1] if len(args) > 1 else "")

    def parse_request(self) -> bool:
        """Parse the request head with ``http11`` instead of the ``email`` package."""
        self.command = None  # type: ignore[assignment]  # as http.server does, for errors
        self.request_version = self.default_request_version
        self.close_connection = True
        raw: bytes = getattr(self, "raw_requestline", b"")  # set by handle_one_request
        self.requestline = str(raw, "iso-8859-1").rstrip("\r\n")
        if not self.requestline.strip():
            return False
        try:
            method, target, version = http11.request_line(raw)
            self.command, self.path, self.request_version = method, target, version
            self.headers = http11.read_headers(self.rfile)  # type: ignore[assignment,arg-type]
        except http11.HeadError as exc:
            self.send_error(exc.status, exc.reason)
            return False
        if self.path.startswith("//"):  # gh-87389: never an absolute-URI-looking path
            self.path = "/" + self.path.lstrip("/")
        connection = (self.headers.get("Connection") or "").lower()
        self.close_connection = version == "HTTP/1.0" or connection == "close"
        if connection == "keep-alive":
            self.close_connection = False
        return True

    def log_error(self, format: str, *args: Any) -> None:
        log.info("http error: %s", (format % args)[:200])

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def precheck(self) -> ApiError | None:
        """Subclasses refuse a request here before routing (Host checks, …)."""
        return None

    def _dispatch(self) -> None:
        self._body_read = False
        path, _, query = self.path.partition("?")
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(query, max_num_fields=32).items()}
        try:
            refusal = self.precheck()
            if refusal is not None:
                raise refusal
            handler, params = self._find(path)
            handler(*params)
        except Exception as exc:
            self.send_error_json(api_error(exc, f"{self.command} {path[:200]}"))

    def _find(self, path: str) -> tuple[Callable[..., None], tuple[str, ...]]:
        allowed = False
        for method, pattern, name in self.ROUTES:
            match = pattern.fullmatch(path)
            if match:
                allowed = True
                if method == self.command:
                    return getattr(self, name), match.groups()
        if allowed:
            raise ApiError(wire.NOT_ALLOWED, f"{self.command} is not allowed on {path[:80]}")
        raise ApiError(wire.NOT_FOUND, f"no such endpoint: {path[:80]}")

    # -- bodies ---------------------------------------------------------------

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            raise invalid("chunked bodies are not accepted; send Content-Length")
        if length is None or not length.isdigit():
            if self.command == "POST":
                raise invalid("missing Content-Length")
            return b""
        size = int(length)
        if size > wire.MAX_BODY:
            self.close_connection = True
            raise ApiError(wire.TOO_LARGE, f"request body over {wire.MAX_BODY} bytes")
        self._body_read = True
        return self.rfile.read(size)

    def _unread_body(self) -> bool:
        """The request has a body no one read: on a kept-alive connection it would be
        parsed as the next request line (a desync that also put tokens in the log)."""
        if getattr(self, "_body_read", False):
            return False
        length = (self.headers.get("Content-Length") or "0").strip()
        return bool(self.headers.get("Transfer-Encoding")) or length != "0"

    def read_json(self) -> dict[str, Any]:
        return json_body(self._body())

    def read_form(self) -> dict[str, str]:
        if not (self.headers.get("Content-Type") or "").startswith(
            "application/x-www-form-urlencoded"
        ):
            raise invalid("send application/x-www-form-urlencoded")
        try:
            text = self._body().decode("ascii")
            pairs = urllib.parse.parse_qs(text, strict_parsing=False, max_num_fields=32)
        except (UnicodeDecodeError, ValueError) as exc:
            raise invalid("malformed form body") from exc
        if any(len(v) > 1 for v in pairs.values()):
            raise invalid("repeated form parameter")  # RFC 6749 §3.1
        return {k: v[0] for k, v in pairs.items()}

    # -- responses ------------------------------------------------------------

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        # One Content-Type, which ``headers`` may override (e.g. the JWKS's own type).
        fields = {"Content-Type": "application/json", **self.extra_headers, **(headers or {})}
        fields["Content-Length"] = str(len(data))
        if self._unread_body() or self.close_connection:
            # Say so when we will close: a client that reuses the connection after
            # an answer without it fails its next request ("server disconnected").
            fields["Connection"] = "close"  # send_header also sets close_connection
        for name, value in fields.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_html(self, status: int, html: str, headers: dict[str, str]) -> None:
        """An HTML page (or an empty redirect); ``headers`` carry its security policy."""
        data = html.encode()
        self.send_response(status)
        fields = {**self.extra_headers, **headers, "Content-Length": str(len(data))}
        if self._unread_body() or self.close_connection:
            fields["Connection"] = "close"
        for name, value in fields.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, error: ApiError) -> None:
        if error.code in (wire.MISDIRECTED, wire.TOO_LARGE):
            self.close_connection = True
        self.send_json(error.status, {"error": {"code": error.code, "message": error.message}})
