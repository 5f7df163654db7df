"""Verifying our own access tokens, for introspection (RFC 7662) and the gateway.

Pinned: ``alg`` must be ES256, ``typ`` must be ``at+jwt`` (RFC 9068 §4), the
``kid`` is looked up only in our own key set — ``jku``, ``jwk`` and ``x5u``
headers are never followed. Then signature, ``iss``, ``exp``/``nbf``, and the
store's word on revocation.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jwt

from kontextd.store.db import Store
from kontextd.store.oauth_sql import OAuthStore
from kontextd.tokens import jws
from kontextd.tokens.keys import KeyRing

if TYPE_CHECKING:
    from kontextd.core import Core

LEEWAY = 0  # our own clock signs and checks: no skew to allow for
MAX_TOKEN_LENGTH = 8192


CACHE_SIZE = 1024


def inspect(token: str, *, keys: KeyRing, store: Store, issuer: str) -> dict[str, Any] | None:
    """The claims of an active token of ours, or None (forged, expired, revoked, unknown)."""
    return _live(store, signed_claims(token, keys=keys, issuer=issuer))


def inspect_cached(core: Core, token: str) -> dict[str, Any] | None:
    """``inspect``, with the signature check taken from ``cached_claims``."""
    return _live(core.store, cached_claims(core, token))


def cached_claims(core: Core, token: str | None) -> dict[str, Any] | None:
    """A token's verified claims, from the cache while it has not expired.

    An ES256 verify is most of the cost of an introspection or a gateway call.
    Only the signature check is skipped on a hit: expiry is re-read from the
    claims, and revocation from the store by the caller, every time. Tokens are
    canonical (``jws``), so a malleated copy is a miss and then refused.
    """
    if token is None:
        return None
    cache = core.gateway.verified
    claims = cache.get(token)
    if claims is not None and claims["exp"] > time.time() and claims["iss"] == core.issuer:
        return claims
    claims = signed_claims(token, keys=core.keys, issuer=core.issuer)
    if claims is not None:
        if len(cache) >= CACHE_SIZE:
            cache.clear()  # crude but bounded; a refill costs one verify per live token
        cache[token] = claims
    return claims


def _live(store: Store, claims: dict[str, Any] | None) -> dict[str, Any] | None:
    if claims is None:
        return None
    state = status(store, str(claims["jti"]))
    if state is None or state[0] != "live" or state[1] <= time.time():
        return None
    return claims


def status(store: Store, jti: str) -> tuple[str, float] | None:
    """(status, expires_at) of an agent credential — however it was minted — or else of
    a login token of the embedded issuer; None when we never issued it."""
    found = store.credential_status(jti)
    return found if found is not None else OAuthStore(store).access_status(jti)


def signed_claims(token: str, *, keys: KeyRing, issuer: str) -> dict[str, Any] | None:
    """The claims of a token we signed that has not expired, revocation not yet checked.

    The gateway uses this to tell a revoked credential (403) from a bad token (401).
    """
    if not token or len(token) > MAX_TOKEN_LENGTH or not jws.canonical(token):
        return None  # a malleated copy (high-S, odd base64) is not our token
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
