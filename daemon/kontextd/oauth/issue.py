"""Tokens of the user's login session: access (RFC 9068), refresh, ID tokens.

Every access token is recorded (``oauth_tokens``) so introspection and
revocation know it; refresh tokens are recorded only as SHA-256 hashes.
Tokens acting for an agent are not made here: they are credentials
(``kontextd.credentials.issue``), whatever path asked for them.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

from kontextd.core import Core
from kontextd.oauth.state import digest, for_core
from kontextd.store.oauth_sql import TokenRow
from kontextd.tokens import jws
from kontextd.tokens.jwk import ES256, RS256
from kontextd.tokens.mint import new_jti

ACCESS_TTL = 600
ID_TTL = 600
# OIDC Discovery §3: RS256 must be offered. ES256 stays the default (DESIGN.md).
ID_TOKEN_ALGS = (ES256, RS256)
SESSION_TTL = 12 * 3600


def _sign(core: Core, claims: dict[str, Any], typ: str) -> str:
    key = core.keys.active()
    return jws.sign(claims, key.private, {"typ": typ, "kid": key.kid})  # low-S


def access_token(
    core: Core,
    *,
    user: str,
    client_id: str,
    scopes: tuple[str, ...],
    audience: list[str],
    family: str,
    ttl: int,
) -> tuple[str, dict[str, Any]]:
    """Sign and record a login session's RFC 9068 access token; returns (token, claims).

    Only the user's own CLI client gets these (no ``act``): a token that acts for
    an agent is a credential, minted by ``kontextd.credentials.issue``."""
    now = int(time.time())
    jti = new_jti()
    claims: dict[str, Any] = {
        "iss": core.issuer,
        "sub": user,
        "client_id": client_id,
        "aud": audience[0] if len(audience) == 1 else audience,
        "scope": " ".join(scopes),
        "jti": jti,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    }
    for_core(core).db.insert_token(
        TokenRow(
            jti=jti,
            kind="access",
            token_hash=None,
            family=family,
            client_id=client_id,
            user=user,
            scopes=scopes,
            parent=None,
            issued_at=now,
            expires_at=now + ttl,
        )
    )
    return _sign(core, claims, "at+jwt"), claims


def refresh_token(
    core: Core,
    *,
    user: str,
    client_id: str,
    scopes: tuple[str, ...],
    family: str,
    expires_at: float,
) -> str:
    """An opaque refresh token; only its hash is stored."""
    value = secrets.token_urlsafe(32)
    for_core(core).db.insert_token(
        TokenRow(
            jti=new_jti(),
            kind="refresh",
            token_hash=digest(value),
            family=family,
            client_id=client_id,
            user=user,
            scopes=scopes,
            parent=None,
            issued_at=time.time(),
            expires_at=expires_at,
        )
    )
    return value


def id_token(
    core: Core,
    *,
    client_id: str,
    subject: str,
    nonce: str | None,
    name: str | None,
    alg: str = ES256,
) -> str:
    """OIDC Core §2 ID token, with the ``nonce`` of the authorization request.

    ``sub`` is the user exactly as the access tokens of the same login name it
    (``user:LOGIN@HOST``), so a relying party sees one subject. ``alg`` is ES256
    unless the client asked for RS256 (``id_token_signed_response_alg``)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": core.issuer,
        "sub": subject,
        "aud": client_id,
        "iat": now,
        "auth_time": now,
        "exp": now + ID_TTL,
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if name is not None:
        claims["name"] = name
    if alg == ES256:
        return _sign(core, claims, "JWT")
    key = core.keys.signer(alg)
    return jwt.encode(claims, key.private, algorithm=alg, headers={"typ": "JWT", "kid": key.kid})
