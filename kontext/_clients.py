"""``client`` / ``async_client``: httpx clients on the gateway, a credential per request.

The auth flow (an ``httpx.Auth``) asks for a new credential before each request
and sets it as the bearer token, so no token outlives the call it was made for
by more than its TTL. If the gateway answers 401 — the token expired between
minting and arriving, e.g. a request that waited in a queue — it takes one more
credential and sends the request once more (only when the body can be sent
again). Credentials are sent only to the gateway of the client's integration: a
request anywhere else is refused before any token is minted.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any

import httpx

from kontext import _authority
from kontext._errors import InvalidRequest
from kontext._exchange import TTL, Ask, aexchange, exchange

REALM = 'realm="kontext"'  # the gateway's WWW-Authenticate on a 401 (RFC 6750 §3)
OWN = ("base_url", "auth")  # set by us; a caller's value would defeat the point


class CredentialAuth(httpx.Auth):
    """Sets a fresh kontext credential on every request of a gateway client."""

    requires_request_body = False
    requires_response_body = False

    def __init__(self, ask: Ask, authority: _authority.Authority) -> None:
        self._ask = ask
        self._authority = authority
        self.base_url = httpx.URL(f"{authority.issuer}/gw/{ask.integration}/")

    def __repr__(self) -> str:
        return f"<CredentialAuth {self._ask.integration} via {self._authority.issuer}>"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        self._check_destination(request)
        self._authorize(request, exchange(self._ask, self._authority).token)
        response = yield request
        if self._expired(request, response):
            self._authorize(request, exchange(self._ask, self._authority).token)
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._check_destination(request)
        self._authorize(request, (await aexchange(self._ask, self._authority)).token)
        response = yield request
        if self._expired(request, response):
            self._authorize(request, (await aexchange(self._ask, self._authority)).token)
            yield request

    @staticmethod
    def _authorize(request: httpx.Request, token: str) -> None:
        request.headers["Authorization"] = f"Bearer {token}"

    def _check_destination(self, request: httpx.Request) -> None:
        url, gateway = request.url, self.base_url
        if (url.scheme, url.host, url.port) != (gateway.scheme, gateway.host, gateway.port) or not (
            url.raw_path + b"/"
        ).startswith(gateway.raw_path):
            shown = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"
            raise InvalidRequest(
                f"a kontext client for {self._ask.integration} sends credentials only to "
                f"{str(gateway).rstrip('/')}, not to {shown[:120]}"
            )

    @staticmethod
    def _expired(request: httpx.Request, response: httpx.Response) -> bool:
        """A 401 from the gateway itself (not one relayed from the upstream API), for a
        request whose body can be sent again."""
        return (
            response.status_code == 401
            and REALM in response.headers.get("WWW-Authenticate", "")
            and isinstance(request.stream, httpx.ByteStream)
        )


def _prepare(
    integration: str,
    scopes: Iterable[str] | None,
    target: str | None,
    ttl: TTL | None,
    token: str | None,
    kwargs: dict[str, Any],
) -> CredentialAuth:
    taken = [name for name in OWN if name in kwargs]
    if taken:
        raise InvalidRequest(f"a kontext client sets {' and '.join(taken)} itself")
    return CredentialAuth(Ask.build(integration, scopes, target, ttl), _authority.resolve(token))


def client(
    integration: str,
    *,
    scopes: Iterable[str] | None = None,
    target: str | None = None,
    ttl: TTL | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> httpx.Client:
    """An ``httpx.Client`` for ``integration``'s API through the daemon's gateway.

    Every request gets a credential of its own (``scopes``, ``target``, ``ttl``
    and ``token`` as for ``require``); paths are relative to the API root, e.g.
    ``client("github").get("/repos/acme/backend/pulls/42")``. Other keyword
    arguments go to ``httpx.Client`` (``timeout``, ``headers``, ...), except
    ``base_url`` and ``auth``, which it sets. Use it as a context manager, or
    ``close()`` it.

    Raises ``Unavailable`` at once when there is no authority; each request may
    raise what ``require`` raises.
    """
    auth = _prepare(integration, scopes, target, ttl, token, kwargs)
    return httpx.Client(base_url=auth.base_url, auth=auth, **kwargs)


def async_client(
    integration: str,
    *,
    scopes: Iterable[str] | None = None,
    target: str | None = None,
    ttl: TTL | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """``client`` for asyncio: an ``httpx.AsyncClient`` (``async with``)."""
    auth = _prepare(integration, scopes, target, ttl, token, kwargs)
    return httpx.AsyncClient(base_url=auth.base_url, auth=auth, **kwargs)
