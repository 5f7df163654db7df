"""SQL for login sessions, consent grants and the authorization server's tokens.

Like ``audit_sql``, a companion of ``db.Store``: it uses the store's lock,
connection and transactions, and is the only other place that speaks SQL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kontextd.store.db import Store


@dataclass(frozen=True)
class SessionRow:
    id: str
    user: str
    display_name: str | None
    issuer: str
    client_id: str
    subject: str
    external: int
    created_at: float
    expires_at: float
    checked_at: float
    ended_at: float | None
    end_reason: str | None
    local: int = 0  # the local account's session (no login), not a sign-in
    kind: str = "browser"  # or "federated": a CI workload (kontextd.federation)
    workload: str | None = None  # a federated session's workload claims, JSON

    @property
    def federated(self) -> bool:
        return self.kind == FEDERATED


FEDERATED = "federated"


@dataclass(frozen=True)
class GrantRow:
    id: str
    session_id: str
    user: str
    agent: str
    scopes: tuple[str, ...]
    target: str | None
    created_at: float
    expires_at: float
    revoked_at: float | None
    revoke_reason: str | None
    # Approved on the consent page for a public OAuth client (an MCP client): which
    # one, under which name, and the RFC 8707 resource its tokens are bound to.
    client_id: str | None = None
    client_name: str | None = None
    resource: str | None = None


GRANT_COLUMNS = (
    "id, session_id, user, agent, scopes, target, created_at, expires_at, "
    "revoked_at, revoke_reason, client_id, client_name, resource"
)


@dataclass(frozen=True)
class TokenRow:
    jti: str
    kind: str
    token_hash: str | None
    family: str
    client_id: str
    user: str
    scopes: tuple[str, ...]
    parent: str | None
    issued_at: float
    expires_at: float
    rotated_at: float | None = None  # a new token is neither rotated nor revoked
    revoked_at: float | None = None
    revoke_reason: str | None = None


def _grant(row: Any) -> GrantRow:
    values = dict(row)
    values["scopes"] = tuple(values["scopes"].split())
    return GrantRow(**values)


def _token(row: Any) -> TokenRow:
    values = dict(row)
    values["scopes"] = tuple(values["scopes"].split())
    return TokenRow(**values)


class OAuthStore:
    """Reads and writes of sessions, grants and tokens, on the one ``Store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self.store.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self.store.connection() as conn:
            # Every write here may change a cached session or grant (Store.cached).
            self.store.forget_reads()
            return int(conn.execute(sql, args).rowcount)

    # -- login sessions -------------------------------------------------------

    def insert_session(self, row: SessionRow) -> None:
        self._run(
            "INSERT INTO login_sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(row.__dict__.values()),
        )

    def current_session(self) -> SessionRow | None:
        """The newest session — a login, or the local account's — ended or not (an
        ended login still blocks issuance until the next ``login`` or ``logout``)."""
        return self.store.cached("session", self._read_session)

    def _read_session(self) -> SessionRow | None:
        rows = self._all(
            "SELECT * FROM login_sessions ORDER BY created_at DESC, rowid DESC LIMIT 1"
        )
        return SessionRow(**dict(rows[0])) if rows else None

    def end_session(self, session_id: str, reason: str) -> bool:
        return (
            self._run(
                "UPDATE login_sessions SET ended_at = ?, end_reason = ? "
                "WHERE id = ? AND ended_at IS NULL",
                (time.time(), reason, session_id),
            )
            > 0
        )

    def touch_session(self, session_id: str, expires_at: float) -> None:
        self._run(
            "UPDATE login_sessions SET checked_at = ?, expires_at = ? WHERE id = ?",
            (time.time(), expires_at, session_id),
        )

    # -- consent grants -------------------------------------------------------

    def insert_grant(self, row: GrantRow) -> None:
        self._run(
            f"INSERT INTO consent_grants ({GRANT_COLUMNS}) "  # noqa: S608 - a constant
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.session_id,
                row.user,
                row.agent,
                " ".join(row.scopes),
                row.target,
                row.created_at,
                row.expires_at,
                row.revoked_at,
                row.revoke_reason,
                row.client_id,
                row.client_name,
                row.resource,
            ),
        )

    def grant(self, grant_id: str) -> GrantRow | None:
        """One grant, live or not."""
        rows = self._all(
            f"SELECT {GRANT_COLUMNS} FROM consent_grants WHERE id = ?",  # noqa: S608
            (grant_id,),
        )
        return _grant(rows[0]) if rows else None

    def live_grants(self, user: str | None, agent: str | None = None) -> list[GrantRow]:
        """Unrevoked, unexpired grants, oldest first (expiry is checked on every call)."""
        now = time.time()
        rows = self.store.cached(("grants", user, agent), lambda: self._unrevoked(user, agent))
        return [g for g in rows if g.expires_at > now]

    def _unrevoked(self, user: str | None, agent: str | None) -> tuple[GrantRow, ...]:
        sql = f"SELECT {GRANT_COLUMNS} FROM consent_grants WHERE revoked_at IS NULL"  # noqa: S608
        args: tuple[Any, ...] = ()
        if user is not None:
            sql, args = sql + " AND user = ?", (*args, user)
        if agent is not None:
            sql, args = sql + " AND agent = ?", (*args, agent)
        return tuple(_grant(r) for r in self._all(sql + " ORDER BY created_at", args))

    def revoke_grants(
        self,
        reason: str,
        *,
        agent: str | None = None,
        session_id: str | None = None,
        grant_id: str | None = None,
        user: str | None = None,
        clients_only: bool = False,
    ) -> list[str]:
        """Revoke the matching live grants and their refresh tokens; the grant ids."""
        where, args = ["revoked_at IS NULL"], []
        if clients_only:
            where.append("client_id IS NOT NULL")
        if grant_id is not None:
            where.append("id = ?")
            args.append(grant_id)
        if user is not None:
            where.append("user = ?")
            args.append(user)
        if agent is not None:
            where.append("agent = ?")
            args.append(agent)
        if session_id is not None:
            where.append("session_id = ?")
            args.append(session_id)
        # ``where`` holds only the fixed fragments above; every value is a bound parameter.
        clause = " AND ".join(where)
        ids = [
            r["id"]
            for r in self._all(f"SELECT id FROM consent_grants WHERE {clause}", tuple(args))  # noqa: S608
        ]
        self._run(
            f"UPDATE consent_grants SET revoked_at = ?, revoke_reason = ? WHERE {clause}",  # noqa: S608
            (time.time(), reason, *args),
        )
        # A grant's refresh tokens (an MCP client's: their family is the grant) end with
        # it, so introspection (RFC 7662) stops vouching for them at once, not only /token.
        for grant_id in ids:
            self.revoke_family(grant_id, reason)
        return ids

    # -- issued tokens --------------------------------------------------------

    def insert_token(self, row: TokenRow) -> None:
        self._run(
            "INSERT INTO oauth_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.jti,
                row.kind,
                row.token_hash,
                row.family,
                row.client_id,
                row.user,
                " ".join(row.scopes),
                row.parent,
                row.issued_at,
                row.expires_at,
                row.rotated_at,
                row.revoked_at,
                row.revoke_reason,
            ),
        )

    def token(self, jti: str) -> TokenRow | None:
        rows = self._all("SELECT * FROM oauth_tokens WHERE jti = ?", (jti,))
        return _token(rows[0]) if rows else None

    def access_status(self, jti: str) -> tuple[str, float] | None:
        """(status, expires_at) of a login access token (agent tokens are credentials)."""
        row = self.token(jti)
        if row is None or row.kind != "access":
            return None
        return ("revoked" if row.revoked_at is not None else "live", row.expires_at)

    def refresh_by_hash(self, token_hash: str) -> TokenRow | None:
        rows = self._all(
            "SELECT * FROM oauth_tokens WHERE token_hash = ? AND kind = 'refresh'", (token_hash,)
        )
        return _token(rows[0]) if rows else None

    def mark_rotated(self, jti: str) -> bool:
        """Single use: False when it was already rotated (a reuse)."""
        return (
            self._run(
                "UPDATE oauth_tokens SET rotated_at = ? WHERE jti = ? AND rotated_at IS NULL",
                (time.time(), jti),
            )
            > 0
        )

    def revoke_family(self, family: str, reason: str) -> int:
        return self._run(
            "UPDATE oauth_tokens SET revoked_at = ?, revoke_reason = ? "
            "WHERE family = ? AND revoked_at IS NULL",
            (time.time(), reason, family),
        )

    def family_access_jtis(self, family: str) -> list[str]:
        """The access tokens of a login family (agent credentials may hang off them)."""
        rows = self._all(
            "SELECT jti FROM oauth_tokens WHERE family = ? AND kind = 'access'", (family,)
        )
        return [r["jti"] for r in rows]

    def revoke_token(self, jti: str, reason: str) -> bool:
        return (
            self._run(
                "UPDATE oauth_tokens SET revoked_at = ?, revoke_reason = ? "
                "WHERE jti = ? AND revoked_at IS NULL",
                (time.time(), reason, jti),
            )
            > 0
        )

    def revoke_user_tokens(self, user: str, reason: str) -> int:
        return self._run(
            "UPDATE oauth_tokens SET revoked_at = ?, revoke_reason = ? "
            "WHERE user = ? AND revoked_at IS NULL",
            (time.time(), reason, user),
        )
