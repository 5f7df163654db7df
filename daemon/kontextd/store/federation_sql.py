"""SQL for CI federation: a federated session's trust rules, and the tokens already used.

Like ``oauth_sql``, a companion of ``db.Store`` (its lock, connection and read
cache); with it, the only places that speak SQL about sessions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kontextd.store.db import Store
from kontextd.store.oauth_sql import OAuthStore, SessionRow


@dataclass(frozen=True)
class FederatedRow:
    """What a CI session was granted when it logged in: the rules that named its
    workload, each with its end (JSON), and where they were read (JSON)."""

    session_id: str
    platform: str
    rules: str
    sources: str
    token_expires_at: float


class FederationStore:
    """Reads and writes of federated sessions and used tokens, on the one ``Store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sessions = OAuthStore(store)

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self.store.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self.store.connection() as conn:
            self.store.forget_reads()  # a cached federated row may change
            return int(conn.execute(sql, args).rowcount)

    def current_session(self) -> SessionRow | None:
        return self.sessions.current_session()

    def federated(self, session_id: str) -> FederatedRow | None:
        """The federated record of a session (cached: every issuance reads it)."""
        return self.store.cached(("federated", session_id), lambda: self._read(session_id))

    def _read(self, session_id: str) -> FederatedRow | None:
        rows = self._all("SELECT * FROM federated_sessions WHERE session_id = ?", (session_id,))
        return FederatedRow(**dict(rows[0])) if rows else None

    def insert(self, row: FederatedRow) -> None:
        self._run(
            "INSERT INTO federated_sessions VALUES (?, ?, ?, ?, ?)",
            (row.session_id, row.platform, row.rules, row.sources, row.token_expires_at),
        )

    def renew(self, row: FederatedRow, expires_at: float) -> None:
        """The same job logged in again: its new rules and ends, the session's new end."""
        self._run(
            "UPDATE federated_sessions SET rules = ?, sources = ?, token_expires_at = ? "
            "WHERE session_id = ?",
            (row.rules, row.sources, row.token_expires_at, row.session_id),
        )
        self.sessions.touch_session(row.session_id, expires_at)

    def forget(self, session_id: str) -> None:
        self._run("DELETE FROM federated_sessions WHERE session_id = ?", (session_id,))

    def claim_token(self, key: str, expires_at: float) -> bool:
        """Record a CI token as used; False if it already was (a replay). Tokens long
        expired are forgotten: an expired token is refused before it gets here."""
        self._run("DELETE FROM federation_tokens WHERE expires_at < ?", (time.time() - 3600,))
        return (
            self._run("INSERT OR IGNORE INTO federation_tokens VALUES (?, ?)", (key, expires_at))
            > 0
        )
