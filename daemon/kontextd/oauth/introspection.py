"""RFC 7662 token introspection: what the issuer vouches for, and nothing more.

Access tokens (ours, RFC 9068 JWTs) report their claims while they are live.
Refresh tokens are opaque and only their SHA-256 is stored; RFC 7662 §2.1 lets
a caller introspect them too (``token_type_hint=refresh_token``), and a live one
reports ``active: true`` with ``token_type: refresh_token`` — the word peers
use in ``token_type_hint`` (RFC 7009 §2.1) — its client, scope, subject and
expiry. A rotated, revoked, expired, forged or unknown token is just
``{"active": false}`` (§2.2: nothing about why).

Introspection is open on loopback: the caller must already hold the token, and
tokens are unguessable (DESIGN.md).
"""

from __future__ import annotations

import time
from typing import Any

from kontextd.core import Core
from kontextd.oauth.state import digest
from kontextd.store.oauth_sql import OAuthStore
from kontextd.tokens import verify

INACTIVE: dict[str, Any] = {"active": False}
MAX_REFRESH_LENGTH = 512  # ours are 43 characters; anything longer is not one


def introspect(core: Core, token: str) -> dict[str, Any]:
    """The RFC 7662 §2.2 answer for ``token``."""
    claims = verify.inspect_cached(core, token)
    if claims is not None:
        return {"active": True, "token_type": "Bearer", **claims}
    return _refresh(core, token)


def _refresh(core: Core, token: str) -> dict[str, Any]:
    if not token or len(token) > MAX_REFRESH_LENGTH or "." in token:
        return dict(INACTIVE)
    row = OAuthStore(core.store).refresh_by_hash(digest(token))
    now = time.time()
    if row is None or row.revoked_at is not None or row.rotated_at is not None:
        return dict(INACTIVE)
    if row.expires_at <= now:
        return dict(INACTIVE)
    return {
        "active": True,
        "token_type": "refresh_token",
        "iss": core.issuer,
        "sub": row.user,
        "client_id": row.client_id,
        "scope": " ".join(row.scopes),
        "iat": int(row.issued_at),
        "exp": int(row.expires_at),
    }
