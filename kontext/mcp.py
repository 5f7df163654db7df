"""kontext for MCP servers: accept kontext's tokens, give each tool call its own credential.

An MCP server is an OAuth resource server (MCP authorization spec). With the
official SDK (``pip install '.[mcp]'`` in kontext's checkout) it takes kontext as its
authorization server in two lines, and a tool turns the caller's token into a
narrow, short credential for the one call it makes::

    import kontext
    from kontext import mcp as kontext_mcp
    from mcp.server.mcpserver import MCPServer

    URL = "http://127.0.0.1:8765/mcp"
    server = MCPServer("pr-reviewer", **kontext_mcp.auth(URL, scopes=["github:pulls:read"]))

    @server.tool()
    async def list_pulls(repo: str) -> list[dict]:
        cred = await kontext.arequire("github", target=repo, token=kontext_mcp.token())
        ...

``auth`` gives the SDK:

- ``AuthSettings``: this server's resource URL, kontext's issuer (so the SDK
  serves RFC 9728 metadata naming it, and its 401 points there), the scopes a
  token must carry;
- a ``TokenVerifier`` that accepts only kontext's tokens for *this* server: an
  ES256 signature by a key of the issuer's JWKS, ``typ: at+jwt`` (RFC 9068),
  ``iss`` the issuer, ``aud`` this server's resource URL (RFC 8707), not
  expired — and still live, by asking the issuer (RFC 7662 introspection), so
  revoking the agent or its grant is felt on the next request.

The issuer is the local daemon: ``issuer=``, else ``KONTEXT_URL``, else the
daemon of this OS user (its runtime directory). Only ``http://127.0.0.1:PORT``
(``localhost``, ``[::1]``) is accepted — kontextd listens nowhere else.

``tool_errors()`` turns kontext's refusals and an upstream's HTTP error into the
SDK's ``ToolError``, so the client reads why a call failed.

This module imports ``mcp`` (an optional extra): ``import kontext`` never loads it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ToolError

import kontext

__all__ = ["KontextTokenVerifier", "auth", "local_issuer", "token", "tool_errors"]

log = logging.getLogger("kontext.mcp")
ENV_URL = "KONTEXT_URL"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_TOKEN = 8192
JWKS_REFRESH = 30.0  # unknown kids on older tokens: at most one JWKS fetch per this long
TIMEOUT = 5.0


class NoToken(RuntimeError):
    """``token()`` was called outside a request the verifier accepted."""


def auth(resource: str, *, scopes: Iterable[str] = (), issuer: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``MCPServer(...)``: ``auth`` and ``token_verifier``.

    Args:
        resource: this server's URL as clients call it, e.g.
            ``http://127.0.0.1:8765/mcp`` — its tokens' audience.
        scopes: what every token must carry (``github:pulls:read``); MCP clients
            ask for these (RFC 9728 ``scopes_supported``).
        issuer: kontext's issuer URL; default: ``KONTEXT_URL`` or this user's daemon.
    """
    where = issuer or local_issuer()
    wanted = list(scopes)
    # Strings, so the settings keep a path-less issuer exactly (RFC 8414 §3.3
    # compares issuers as strings; a URL object would gain a trailing slash).
    settings = AuthSettings.model_validate(
        {
            "issuer_url": where,
            "resource_server_url": resource,
            "required_scopes": wanted or None,
            "validate_token_resource": True,
        }
    )
    return {"auth": settings, "token_verifier": KontextTokenVerifier(resource, where)}


def token() -> str:
    """The verified bearer token of the request being served (to exchange it:
    ``kontext.arequire("github", token=kontext.mcp.token())``)."""
    access = get_access_token()
    if access is None:
        raise NoToken(
            "no verified kontext token in this request: serve the tool from an MCPServer "
            "built with kontext.mcp.auth(...)"
        )
    return access.token


@contextlib.contextmanager
def tool_errors() -> Iterator[None]:
    """Inside a tool: the refusals a client should read, as the SDK's ``ToolError``.

    The SDK shows the client only ``Error executing tool NAME`` for any other
    exception. kontext's refusals (``kontext.KontextError``: denied by a layer or
    because the caller's token is no longer live, an integration not connected,
    no daemon) and an upstream's HTTP error status are anticipated, and their
    one-line messages are meant for people: they reach the client as they are.
    No secret is in them (the credential travels in a header, never the URL)."""
    try:
        yield
    except kontext.KontextError as exc:
        raise ToolError(exc.message) from exc
    except httpx.HTTPStatusError as exc:
        answer = exc.response
        raise ToolError(
            f"{exc.request.method} {exc.request.url.path} answered "
            f"{answer.status_code} {answer.reason_phrase}".rstrip()
        ) from exc


def local_issuer() -> str:
    """``KONTEXT_URL`` if set, else the issuer of this OS user's running daemon."""
    url = os.environ.get(ENV_URL, "").strip()
    if not url:
        from kontext.common import paths

        try:
            with open(paths.resolve().http_info, encoding="utf-8") as fh:
                url = f"http://127.0.0.1:{int(json.load(fh)['port'])}"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(
                "no kontext daemon found: start it ('kontext daemon start') or set KONTEXT_URL"
            ) from exc
    return _loopback(url)


def _loopback(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK or parts.path not in ("", "/"):
        raise ValueError(f"{url!r} is not a kontext issuer (http://127.0.0.1:PORT)")
    return url.rstrip("/")


class KontextTokenVerifier:
    """The MCP SDK's ``TokenVerifier`` for kontext's tokens meant for ``resource``."""

    def __init__(self, resource: str, issuer: str) -> None:
        self.resource = resource.rstrip("/")
        self.issuer = _loopback(issuer)
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0  # monotonic time of the last JWKS read
        self._fetched_wall = 0.0  # and its wall-clock time, to compare with a token's iat

    def __repr__(self) -> str:
        return f"KontextTokenVerifier(resource={self.resource!r}, issuer={self.issuer!r})"

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's facts when it passes every check, else None (the SDK answers 401).

        A loopback connection per request (no pool to outlive the server's event loop).
        Plain http to a loopback issuer (``_loopback``): no TLS, so no certificate
        store to load — that alone cost ~80 ms per client on the 2-core box."""
        async with httpx.AsyncClient(timeout=TIMEOUT, verify=False) as http:  # noqa: S501
            return await self._verify(http, token)

    async def _verify(self, http: httpx.AsyncClient, token: str) -> AccessToken | None:
        claims = await self._signed_claims(http, token)
        if claims is None:
            return None
        why = self._refusal(claims)
        if why is None and not await self._live(http, token):
            why = "revoked or ended (introspection says inactive)"
        if why is not None:
            log.info("kontext token refused: %s (jti %s)", why, claims.get("jti"))
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.resource,
            subject=str(claims["sub"]),
            claims=claims,
        )

    async def _signed_claims(self, http: httpx.AsyncClient, token: str) -> dict[str, Any] | None:
        """RFC 9068 §4: pinned ES256, ``typ`` at+jwt, a ``kid`` of the issuer's JWKS."""
        if not token or len(token) > MAX_TOKEN:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        if (
            header.get("alg") != "ES256"
            or header.get("typ") != "at+jwt"
            or not isinstance(kid, str)
        ):
            return None
        key = await self._key(http, kid, _unverified_iat(token))
        if key is None:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["ES256"],
                issuer=self.issuer,
                options={"verify_aud": False, "require": ["exp", "iat", "jti", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            log.info("kontext token refused: %s", type(exc).__name__)
            return None
        return claims

    def _refusal(self, claims: dict[str, Any]) -> str | None:
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else list(aud or [])
        if self.resource not in [str(a).rstrip("/") for a in audiences]:
            return f"meant for {aud!r}, not this server ({self.resource})"
        act = claims.get("act")
        if not isinstance(act, dict) or not str(act.get("sub", "")).startswith("agent:"):
            return "names no agent (act)"
        return None

    async def _key(self, http: httpx.AsyncClient, kid: str, issued_at: float) -> Any:
        """The issuer's key ``kid``, reading the JWKS again when it is unknown.

        kontext publishes a key before it signs with it, so a token issued before
        our last read cannot name a key we lack: for those, at most one read per
        ``JWKS_REFRESH``. A token issued since (``iat`` has whole seconds) may be
        signed by a key rotated in since (``kontext keys rotate --now``): read
        again at once, or the client's fresh token would be refused. A forged
        token claiming that costs the issuer one loopback read, as any request
        does; one claiming more than a minute to come is not believed."""
        if kid in self._keys:
            return self._keys[kid]
        now = time.time()
        newer = self._fetched_wall < issued_at + 1 <= now + 60
        if newer or time.monotonic() - self._fetched > JWKS_REFRESH:
            self._fetched, self._fetched_wall = time.monotonic(), now
            try:
                answer = await http.get(f"{self.issuer}/jwks.json")
                keys = answer.json().get("keys", [])
                self._keys = {k["kid"]: jwt.PyJWK(k).key for k in keys if k.get("alg") == "ES256"}
            except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWTError) as exc:
                log.warning("cannot read kontext's JWKS at %s: %s", self.issuer, type(exc).__name__)
        return self._keys.get(kid)

    async def _live(self, http: httpx.AsyncClient, token: str) -> bool:
        try:
            answer = await http.post(f"{self.issuer}/introspect", data={"token": token})
            return answer.status_code == 200 and answer.json().get("active") is True
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot reach kontext to introspect: %s", type(exc).__name__)
            return False


def _unverified_iat(token: str) -> float:
    """The token's ``iat`` before its signature is checked (only to decide whether
    to read the JWKS again; 0 when absent or malformed)."""
    try:
        iat = jwt.decode(token, options={"verify_signature": False}).get("iat")
    except jwt.PyJWTError:
        return 0.0
    return float(iat) if isinstance(iat, (int, float)) and not isinstance(iat, bool) else 0.0
