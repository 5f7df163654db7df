"""Forwarding an allowed call upstream, streaming both ways, and auditing it.

The gateway is an ``async`` loopback route (``kontextd.api.loopback``): the
caller's body streams to the upstream as it arrives (``request.chunks``), and
the upstream's answer streams back as it comes (gzip stays gzip;
Content-Length and Content-Encoding pass through), both at the pace the slower
side takes them, on the gateway's pooled keep-alive client (``upstream``, TLS
verified) — or ``httpx.AsyncClient`` where the environment names a proxy. What
crosses in headers, and what is rewritten, is ``kontextd.gateway.headers``.

Deciding (``authorize``) is quick, in-memory and SQLite work and runs on the
loop; fetching the upstream secret may wait on the keyring or refresh at the
provider, so unless it is already in memory it runs on the server's executor.
A call without a request body whose secret and upstream connection are at hand
takes the fast path (``relay``: the same decision, no task); ``handle`` is the
general path. A form body is read whole and checked first (``forms``: no
``_method`` field), then sent.

The audit records method, path (never the query string), status, byte counts
and duration — never bodies or secrets. Refusals of callers without a valid
token are recorded at most a few times a minute (``api.web.refusals``): any
local user or web page can send them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from kontextd.api.web.connection import HttpConnection
from kontextd.api.web.messages import Request, Response, Stream, json_response
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.gateway import authorize, connections, forms, headers, upstream
from kontextd.gateway.authorize import Decision
from kontextd.gateway.relay import Relay
from kontextd.oauth import resource_metadata

log = logging.getLogger("kontextd.gateway")
PREFIX = "/gw/"
CHUNK = 64 * 1024
NO_BODY = (204, 304)
UNAUTHENTICATED = (401, 404)  # refused before any valid token was shown


class Exchange:
    """One proxied call: what the audit needs, filled in as it goes."""

    def __init__(self, request: Request, name: str, raw_path: str) -> None:
        self.request = request
        self.method = request.method
        self.name = name
        self.raw_path = raw_path
        self.query = request.query_string
        self.started = time.monotonic_ns()
        self.sent = 0  # request body bytes forwarded upstream
        self.form: bytes | None = None  # a form body, read whole and checked (``forms``)
        self.received = 0  # response body bytes passed back to the caller
        self.status = 0

    def duration_ms(self) -> float:
        """Milliseconds, two decimals (rounded half up, in integers: ``round`` on a float
        cost more than the rest of the audit record)."""
        return (time.monotonic_ns() - self.started + 5_000) // 10_000 / 100

    async def body(self) -> AsyncIterator[bytes]:
        if self.form is not None:
            self.sent = len(self.form)
            yield self.form
            return
        assert self.request.chunks is not None
        async for chunk in self.request.chunks:
            self.sent += len(chunk)
            yield chunk


class Gateway:
    """``METHOD /gw/NAME/PATH?QUERY``: decide, forward, audit."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def decide(self, request: Request) -> tuple[Exchange, Decision]:
        """Every check of a call (``authorize``, and what the URL and headers may not do)."""
        name, _, rest = request.path[len(PREFIX) :].partition("/")
        exchange = Exchange(request, name, "/" + rest)
        refusal = headers.override_refusal(request.headers.items(), exchange.query)
        decision = authorize.decide(
            self.core, name, request.method, exchange.raw_path, request.headers.get("Authorization")
        )
        if decision.allowed and refusal is not None:
            decision.refuse(400, refusal)
        if decision.allowed and headers.carries(
            request.target, headers.token_marks(decision.token)
        ):
            decision.refuse(400, "send the token in the Authorization header, never in the URL")
        return exchange, decision

    def relay(self, conn: HttpConnection, request: Request) -> bool:
        """The fast path (``gateway.relay``), on the loop: True if it took the call (it
        answers through ``conn``), False to leave it to ``handle``."""
        if request.chunks is not None or request.method == "HEAD" or "#" in request.target:
            return False
        exchange, decision = self.decide(request)
        if not decision.allowed:
            request.body_used = True  # there is none
            conn.send(request, self._refuse(exchange, decision))
            return True
        integ = decision.integration
        assert integ is not None and integ.base_url is not None
        where = upstream.endpoint(integ.base_url)
        secret = connections.ready_secret(self.core, integ)
        state = self.core.gateway
        if where is None or secret is None or state.proxied(integ.base_url):
            return False
        origin, host, base_path = where
        up = state.upstream_pool().take(origin)
        if up is None:
            return False  # the general path opens one, and gives it to the pool after
        query = f"?{exchange.query}" if exchange.query else ""
        outgoing = headers.upstream_headers(
            request.headers.items(), decision.token, integ.auth_scheme, secret
        )
        try:
            head = upstream.request_head(
                request.method, base_path + exchange.raw_path + query, host, outgoing, False
            )
        except upstream.UpstreamError:
            state.upstream_pool().put(origin, up)
            return False  # the general path refuses it with its own words
        request.body_used = True
        Relay(self, conn, exchange, decision, up, origin).start(head)
        return True

    def retry(self, conn: HttpConnection, request: Request) -> None:
        """A fast-path call whose connection failed before any answer: the general path."""
        conn.server.hand_over(conn, request)

    def audit(self, exchange: Exchange, decision: Decision) -> None:
        record(self.core, exchange, decision, "api.call")

    def refusal(self, exchange: Exchange, decision: Decision, event: str) -> Response:
        return self._refuse(exchange, decision, event)

    def provider_refused(self, name: str) -> None:
        """The provider no longer takes this access token (revoked on its side): the
        next call refreshes instead of failing until the cached expiry."""
        with self.core.gateway.lock:
            self.core.gateway.access.pop(name, None)

    async def handle(self, request: Request) -> Response | Stream:
        exchange, decision = self.decide(request)
        if decision.allowed and request.chunks is not None:
            kinds = [v for n, v in request.headers.items() if n.lower() == "content-type"]
            try:
                kind = forms.form_type(kinds)
                if kind is not None:
                    exchange.form = await forms.read_checked(request.chunks, kind)
            except forms.FormRefused as exc:
                decision.refuse(exc.status, exc.reason)
        if not decision.allowed:
            return self._refuse(exchange, decision)
        assert decision.integration is not None
        try:
            secret = connections.ready_secret(self.core, decision.integration)
            if secret is None:
                loop = asyncio.get_running_loop()
                secret = await loop.run_in_executor(
                    None, connections.upstream_secret, self.core, decision.integration
                )
        except ApiError as exc:
            return self._refuse(exchange, decision.refuse(exc.status, exc.message), "api.call")
        return await self._forward(exchange, decision, secret)

    async def _forward(
        self, exchange: Exchange, decision: Decision, secret: str
    ) -> Response | Stream:
        integ = decision.integration
        assert integ is not None and integ.base_url is not None
        request = exchange.request
        url = integ.base_url + exchange.raw_path + (f"?{exchange.query}" if exchange.query else "")
        outgoing = headers.upstream_headers(
            request.headers.items(), decision.token, integ.auth_scheme, secret
        )
        has_body = request.chunks is not None  # streamed only when a body was announced
        body = exchange.body() if has_body else None
        try:
            response = await self._send(request.method, url, outgoing, body)
        except (upstream.UpstreamError, OSError) as exc:
            request.close = True
            reason = f"the upstream did not answer ({str(exc)[:120]})"
            return self._refuse(exchange, decision.refuse(502, reason), "api.call")
        if not has_body:
            request.body_used = True
        if response.status_code == 401:
            self.provider_refused(integ.name)
        exchange.status = response.status_code
        gateway_base = f"{self.core.issuer}{PREFIX}{integ.name}"
        length = response.header("Content-Length")
        head_only = request.method == "HEAD" or response.status_code in NO_BODY
        prefix = b"" if head_only else response.take_buffered()
        exchange.received += len(prefix)
        return Stream(
            status=response.status_code,
            reason=response.reason_phrase or None,
            headers=headers.downstream_headers(response.headers, integ.base_url, gateway_base),
            chunks=self._relay(exchange, decision, response),
            length=int(length) if length is not None and length.isdigit() else None,
            head_only=head_only,
            prefix=prefix,
        )

    async def _send(
        self,
        method: str,
        url: str,
        outgoing: list[tuple[str, str]],
        body: AsyncIterator[bytes] | None,
    ) -> Any:
        """The upstream's answer, head read: on our pooled client, or through the
        environment's proxy with httpx (``upstream.uses_proxy``)."""
        state = self.core.gateway
        if not state.proxied(url):
            return await state.upstream_pool().request(method, url, outgoing, body)
        import httpx

        client = state.async_client()
        built = client.build_request(method, url, headers=outgoing, content=body)
        try:
            return _ProxiedResponse(await client.send(built, stream=True))
        except httpx.HTTPError as exc:
            raise upstream.UpstreamError(type(exc).__name__) from exc

    async def _relay(
        self, exchange: Exchange, decision: Decision, response: Any
    ) -> AsyncIterator[bytes]:
        try:
            async for piece in response.chunks():
                exchange.received += len(piece)
                yield piece
        except (upstream.UpstreamError, OSError) as exc:
            log.info("gateway stream to %s ended early: %s", exchange.name, type(exc).__name__)
            raise ConnectionError("the upstream's answer ended early") from exc
        finally:
            record(self.core, exchange, decision, "api.call")  # first: a cancel may end us below
            await response.aclose()

    def _refuse(
        self, exchange: Exchange, decision: Decision, event: str = "api.denied"
    ) -> Response:
        exchange.status = decision.status
        fields: dict[str, str] = {}
        if decision.status == 401:
            # RFC 6750 §3.1: no error code when the request carried no token at all.
            shown = authorize.bearer(exchange.request.headers.get("Authorization")) is not None
            error = ', error="invalid_token"' if shown else ""
            # RFC 9728 §5.1: where an OAuth client learns how to get a token for this.
            where = resource_metadata.metadata_url(self.core, exchange.name[:40])
            fields["WWW-Authenticate"] = (
                f'Bearer realm="kontext"{error}, resource_metadata="{where}"'
            )
        # GitHub's error shape ({"message": ...}) so clients print something sensible.
        body = {
            "message": f"kontext: {decision.reason}",
            "error": {"code": "gateway", "message": decision.reason},
        }
        if event == "api.denied" and decision.status in UNAUTHENTICATED:
            self._record_unauthenticated(exchange, decision)
        else:
            record(self.core, exchange, decision, event)
        return json_response(decision.status, body, fields)

    def _record_unauthenticated(self, exchange: Exchange, decision: Decision) -> None:
        """At most a few rows a minute for callers who showed no valid token."""
        refusals = self.core.gateway.refusals
        fields = {
            "integration": exchange.name[:40],
            "method": exchange.method[:16],
            "path": exchange.raw_path[:100],
            "status": decision.status,
            "reason": decision.reason[:200],
        }
        if refusals is not None:
            refusals.record("api.denied", str(decision.status), fields)


class _ProxiedResponse:
    """An httpx answer (through a proxy) with ``upstream.Response``'s interface."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self.status_code: int = response.status_code
        self.reason_phrase: str = response.reason_phrase
        self.headers: list[tuple[str, str]] = list(response.headers.multi_items())

    def header(self, name: str) -> str | None:
        value: str | None = self._response.headers.get(name)
        return value

    def take_buffered(self) -> bytes:
        return b""

    async def chunks(self) -> AsyncIterator[bytes]:
        import httpx

        try:
            async for piece in self._response.aiter_raw(CHUNK):
                yield piece
        except httpx.HTTPError as exc:
            raise upstream.UpstreamError(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


def _put(row: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        row[key] = value


def record(core: Core, exchange: Exchange, decision: Decision, event: str) -> None:
    """One audit event per call; never the body, the query string or any secret."""
    claims = decision.claims
    act = claims.get("act")
    actor = act.get("sub") if isinstance(act, dict) else None
    row: dict[str, Any] = {"event": event}
    if actor:
        row["agent"] = {"id": actor}
    if claims.get("sub"):
        row["user"] = {"id": claims["sub"]}
    _put(row, "jti", claims.get("jti"))
    row["integration"] = exchange.name[:40]
    _put(row, "upstream", decision.upstream)
    row["method"] = exchange.method[:16]
    row["path"] = exchange.raw_path[:300]
    row["status"] = exchange.status
    _put(row, "scope", decision.scope)
    _put(row, "target", decision.target)
    row["request_bytes"] = exchange.sent
    row["response_bytes"] = exchange.received
    row["duration_ms"] = exchange.duration_ms()
    if decision.reason:
        row["reason"] = decision.reason

    if core.gateway.defer is not None:
        # Committed with this loop iteration's other writes (one INSERT: no savepoint).
        core.gateway.defer(lambda: core.store.append_in_batch(row))
    else:
        with core.store.transaction() as tx:
            tx.append_event(row)
