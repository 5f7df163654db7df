"""Forwarding an allowed call upstream, streaming both ways, and auditing it.

Forwarding uses httpx rather than ``http.client``: one pooled, thread-safe client
keeps upstream connections alive across handler threads (the stdlib would need a
hand-made pool), takes the request body as an iterator and hands back the
response as raw chunks (``iter_raw``: gzip stays gzip, so Content-Length and
Content-Encoding pass through untouched), with TLS verification on by default.

Our token never leaves: ``Authorization`` is replaced by the upstream credential
and any header carrying the token is dropped; hop-by-hop headers (RFC 9110 §7.6.1)
are not forwarded either way. The audit records method, path (never the query
string), status, byte counts and duration — never bodies or secrets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kontextd.errors import ApiError
from kontextd.gateway import authorize, connections
from kontextd.gateway.authorize import Decision

if TYPE_CHECKING:
    from kontextd.api.loopback import LoopbackHandler

log = logging.getLogger("kontextd.gateway")
PREFIX = "/gw/"
CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
        "cookie",
        "expect",
    }
)
NO_BODY = (204, 304)


class Exchange:
    """One proxied call: what the audit needs, filled in as it goes."""

    def __init__(self, handler: LoopbackHandler, name: str, raw_path: str, query: str) -> None:
        self.handler = handler
        self.name = name
        self.raw_path = raw_path
        self.query = query
        self.started = time.monotonic()
        self.sent = 0  # request body bytes forwarded upstream
        self.received = 0  # response body bytes passed back to the caller
        self.status = 0

    # -- request --------------------------------------------------------------

    def upstream_headers(self, decision: Decision, secret: str) -> list[tuple[str, str]]:
        drop = HOP_BY_HOP | _connection_tokens(self.handler.headers.get("Connection", ""))
        headers = [
            (k, v)
            for k, v in self.handler.headers.items()
            if k.lower() not in drop and decision.token not in v
        ]
        scheme = decision.integration.auth_scheme if decision.integration else "Bearer"
        headers.append(("Authorization", f"{scheme} {secret}"))
        length = self.handler.headers.get("Content-Length")
        if length is not None and length.strip().isdigit():
            headers.append(("Content-Length", length.strip()))
        return headers

    def body(self) -> Iterator[bytes] | None:
        """The caller's body as chunks, read only as the upstream takes them."""
        headers = self.handler.headers
        self.handler._body_read = True  # we consume it, streaming
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            return self._count(_dechunk(self.handler.rfile))
        length = (headers.get("Content-Length") or "0").strip()
        if not length.isdigit() or int(length) == 0:
            return None
        return self._count(_limited(self.handler.rfile, int(length)))

    def _count(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.sent += len(chunk)
            yield chunk

    # -- response -------------------------------------------------------------

    def relay(self, response: Any, upstream_base: str, gateway_base: str) -> None:
        """Send the upstream's status, headers and body back, as it streams in."""
        handler = self.handler
        self.status = response.status_code
        # send_response_only: the upstream's own Date and Server pass through, not ours.
        handler.send_response_only(response.status_code, response.reason_phrase or None)
        drop = HOP_BY_HOP | _connection_tokens(response.headers.get("Connection", ""))
        for key, value in response.headers.multi_items():
            if key.lower() in ("location", "content-location") and value.startswith(upstream_base):
                # A redirect followed straight to the upstream would carry our token
                # there (and bypass the rules): keep the client on the gateway.
                value = gateway_base + value[len(upstream_base) :]
            if key.lower() not in drop:
                handler.send_header(key, value)
        length = response.headers.get("Content-Length")
        bodyless = handler.command == "HEAD" or response.status_code in NO_BODY
        chunked = not bodyless and length is None
        if length is not None:
            handler.send_header("Content-Length", length)
        elif chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        if bodyless:
            return
        for piece in response.iter_raw(CHUNK):
            if not piece:
                continue
            self.received += len(piece)
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")

    def duration_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 2)


def _connection_tokens(value: str) -> frozenset[str]:
    """Headers named in ``Connection`` are hop-by-hop too (RFC 9110 §7.6.1)."""
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def _limited(rfile: Any, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = rfile.read(min(CHUNK, remaining))
        if not chunk:
            raise ConnectionError("the caller closed mid-body")
        remaining -= len(chunk)
        yield chunk


def _dechunk(rfile: Any) -> Iterator[bytes]:
    """Decode a chunked request body (RFC 9112 §7.1) as it arrives."""
    while True:
        line = rfile.readline(1024)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ConnectionError("malformed chunked body") from None
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers: not forwarded
            return
        yield from _limited(rfile, size)
        rfile.readline(3)


def handle(handler: LoopbackHandler) -> None:
    """Serve ``METHOD /gw/NAME/PATH?QUERY``: decide, forward, audit."""
    path, _, query = handler.path.partition("?")
    name, _, rest = path[len(PREFIX) :].partition("/")
    exchange = Exchange(handler, name, "/" + rest, query)
    core = handler.server.core
    if handler.headers.get("Origin"):
        # No browser page has any business here; the token would be the page's to use.
        return _refuse(exchange, Decision(None, 403, "cross-origin request refused"))
    decision = authorize.decide(
        core, name, handler.command, exchange.raw_path, handler.headers.get("Authorization")
    )
    if decision.allowed and decision.token in query:
        decision.refuse(400, "send the token in the Authorization header, never in the URL")
    if not decision.allowed:
        return _refuse(exchange, decision)
    assert decision.integration is not None
    try:
        secret = connections.upstream_secret(core, decision.integration)
    except ApiError as exc:
        return _refuse(exchange, decision.refuse(exc.status, exc.message), event="api.call")
    _forward(exchange, decision, secret)
    return None


def _forward(exchange: Exchange, decision: Decision, secret: str) -> None:
    import httpx

    integ = decision.integration
    assert integ is not None and integ.base_url is not None
    url = integ.base_url + exchange.raw_path + (f"?{exchange.query}" if exchange.query else "")
    client = exchange.handler.server.core.gateway.client()
    request = client.build_request(
        exchange.handler.command,
        url,
        headers=exchange.upstream_headers(decision, secret),
        content=exchange.body(),
    )
    try:
        response = client.send(request, stream=True)
    except (httpx.HTTPError, ConnectionError) as exc:
        exchange.handler.close_connection = True
        reason = f"the upstream did not answer ({type(exc).__name__})"
        return _refuse(exchange, decision.refuse(502, reason), event="api.call")
    if response.status_code == 401:
        # The provider no longer takes this access token (revoked on its side):
        # the next call refreshes instead of failing until the cached expiry.
        with exchange.handler.server.core.gateway.lock:
            exchange.handler.server.core.gateway.access.pop(integ.name, None)
    gateway_base = f"{exchange.handler.server.core.issuer}{PREFIX}{integ.name}"
    try:
        exchange.relay(response, integ.base_url, gateway_base)
    except (httpx.HTTPError, OSError) as exc:
        exchange.handler.close_connection = True  # mid-stream: the caller sees a short body
        log.info("gateway stream to %s ended early: %s", integ.name, type(exc).__name__)
        exchange.status = exchange.status or 502
    finally:
        response.close()
        record(exchange, decision, "api.call")
    return None


def _refuse(exchange: Exchange, decision: Decision, event: str = "api.denied") -> None:
    exchange.status = decision.status
    headers = {}
    if decision.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="kontext", error="invalid_token"'
    # GitHub's error shape ({"message": ...}) so clients print something sensible.
    exchange.handler.send_json(
        decision.status,
        {
            "message": f"kontext: {decision.reason}",
            "error": {"code": "gateway", "message": decision.reason},
        },
        headers,
    )
    record(exchange, decision, event)


def record(exchange: Exchange, decision: Decision, event: str) -> None:
    """One audit event per call; never the body, the query string or any secret."""
    claims = decision.claims
    actor = claims.get("act", {}).get("sub") if isinstance(claims.get("act"), dict) else None
    fields: dict[str, Any] = {
        "event": event,
        "agent": {"id": actor} if actor else None,
        "user": {"id": claims["sub"]} if claims.get("sub") else None,
        "jti": claims.get("jti"),
        "integration": exchange.name[:40],
        "method": exchange.handler.command[:16],
        "path": exchange.raw_path[:300],
        "status": exchange.status,
        "scope": decision.scope,
        "target": decision.target,
        "request_bytes": exchange.sent,
        "response_bytes": exchange.received,
        "duration_ms": exchange.duration_ms(),
    }
    if decision.reason:
        fields["reason"] = decision.reason
    core = exchange.handler.server.core
    with core.store.transaction() as tx:
        tx.append_event({k: v for k, v in fields.items() if v is not None})
