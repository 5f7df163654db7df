"""Whether a token from ``/token`` is live: its own record, and its parent's.

A delegated token (RFC 8693) dies with the token it was exchanged from, so
revoking an exec's credential also ends whatever its process exchanged it for.
"""

from __future__ import annotations

from kontextd.store.db import Store
from kontextd.store.oauth_sql import OAuthStore


def token_status(store: Store, jti: str, depth: int = 0) -> tuple[str, float] | None:
    row = OAuthStore(store).token(jti)
    if row is None or row.kind != "access" or depth > 8:
        return None
    if row.revoked_at is not None:
        return ("revoked", row.expires_at)
    if row.parent is not None:
        parent = store.credential_status(row.parent) or token_status(store, row.parent, depth + 1)
        if parent is None or parent[0] != "live":
            return ("revoked", row.expires_at)
    return ("live", row.expires_at)
