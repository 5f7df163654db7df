"""The rows the store hands out: plain frozen values, safe to cache and share."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class AgentRow:
    name: str
    display_name: str
    max_ttl: int
    created_at: float
    disabled_at: float | None
    disabled_reason: str | None
    scopes: tuple[str, ...]
    session_bus: bool = False  # its confined exec may reach the session D-Bus


EXEC, EXCHANGE, CODE = "exec", "exchange", "code"  # how a credential was minted
MCP = "mcp"  # a public OAuth client's (an MCP client's) access token, by code or refresh


class CredentialRow(NamedTuple):
    """One ``credentials`` row. A named tuple, not a dataclass, so that the store's
    cache of live credentials can hold each as a plain tuple of strings and numbers,
    which the garbage collector stops tracking (store/credential_sql.py)."""

    jti: str
    agent: str
    user: str
    scopes: tuple[str, ...]
    audience: tuple[str, ...]
    target: str | None
    kid: str
    issued_at: float
    expires_at: float
    status: str
    ended_at: float | None = None
    end_reason: str | None = None
    wrapper_pid: int | None = None
    child_pid: int | None = None
    child_start: str | None = None
    # How it was minted (``exec``, ``exchange``, ``code``, ``mcp``), for which OAuth client, from
    # which parent credential or user token (its jti), under which consent grant, and
    # the RFC 8693 §4.1 actor chain (JSON) it carries.
    kind: str = EXEC
    client_id: str | None = None
    parent: str | None = None
    grant_id: str | None = None
    act: str | None = None


CRED_COLUMNS = (
    "jti, agent, user, scopes, audience, target, kid, issued_at, expires_at, status, "
    "ended_at, end_reason, wrapper_pid, child_pid, child_start, "
    "kind, client_id, parent, grant_id, act"
)
CRED_COLUMN_COUNT = CRED_COLUMNS.count(",") + 1


def credential_row(row: sqlite3.Row) -> CredentialRow:
    """A ``credentials`` table row (selected as ``CRED_COLUMNS``) as a value."""
    values = dict(row)
    values["scopes"] = tuple(values["scopes"].split())
    values["audience"] = tuple(values["audience"].split())
    return CredentialRow(**values)


@dataclass(frozen=True)
class KeyRow:
    """A signing key's public half and where it is in its life (``tokens/keys.py``)."""

    kid: str
    alg: str
    public_jwk: dict[str, str]
    storage: str
    created_at: float
    signs_from: float | None
    retiring_at: float | None
    retired_at: float | None

    def signs_at(self, now: float) -> bool:
        """Allowed to sign at ``now``: published long enough, not yet retiring."""
        return self.retiring_at is None and (self.signs_from is None or self.signs_from <= now)


KEY_COLUMNS = "kid, alg, public_jwk, storage, created_at, signs_from, retiring_at, retired_at"


def key_row(row: sqlite3.Row) -> KeyRow:
    """A ``signing_keys`` row (selected as ``KEY_COLUMNS``) as a value."""
    values = dict(row)
    values["public_jwk"] = json.loads(values["public_jwk"])
    return KeyRow(**values)
