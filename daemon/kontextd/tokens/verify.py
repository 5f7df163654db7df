"""Verifying our own access tokens, for introspection (RFC 7662) and the gateway.

Pinned: ``alg`` must be ES256, ``typ`` must be ``at+jwt`` (RFC 9068 §4), the
``kid`` is looked up only in our own key set — ``jku``, ``jwk`` and ``x5u``
headers are never followed. Then signature, ``iss``, ``exp``/``nbf``, and the
store's word on revocation.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from kontextd.store.db import Store
from kontextd.tokens.keys import KeyRing

LEEWAY = 0  # our own clock signs and checks: no skew to allow for
MAX_TOKEN_LENGTH = 8192


def inspect(token: str, *, keys: KeyRing, store: Store, issuer: str) -> dict[str, Any] | None:
    """The claims of an active token of ours, or None (forged, expired, revoked, unknown)."""
    claims = signed_claims(token, keys=keys, issuer=issuer)
    if claims is None:
        return None
    status = store.credential_status(str(claims["jti"]))
    if status is None:  # not an exec credential: perhaps a token from /token
        from kontextd.oauth.status import token_status

        status = token_status(store, str(claims["jti"]))
    if status is None or status[0] != "live" or status[1] <= time.time():
        return None
    return claims


def signed_claims(token: str, *, keys: KeyRing, issuer: str) -> dict[str, Any] | None:
    """The claims of a token we signed that has not expired, revocation not yet checked.

    The gateway uses this to tell a revoked credential (403) from a bad token (401).
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return None
    if header.get("alg") != "ES256" or header.get("typ") != "at+jwt":
        return None
    kid = header.get("kid")
    public = keys.public_key(kid) if isinstance(kid, str) else None
    if public is None:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public,
            algorithms=["ES256"],
            issuer=issuer,
            leeway=LEEWAY,
            options={"verify_aud": False, "require": ["exp", "iat", "jti", "sub", "iss"]},
        )
    except jwt.PyJWTError:
        return None
    return claims
