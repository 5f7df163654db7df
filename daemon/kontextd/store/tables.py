"""The agents and signing-keys tables, and the three small query helpers.

A base of ``db.Store`` (which owns the connection, the lock and the transactions):
it keeps ``db`` within one screenful of concerns. Nothing here opens a transaction;
callers write inside ``Store.transaction()`` as everywhere else.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

from kontextd.store.rows import KEY_COLUMNS, AgentRow, KeyRow, key_row


class Tables:
    """SQL for agents and signing keys; the store's lock and connection are its own."""

    _lock: threading.RLock
    _conn: sqlite3.Connection
    _writer: sqlite3.Cursor  # for statements whose rows no one reads (``_run``)
    _agents: dict[str, AgentRow | None]  # read on every issuance and lease end

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        # One cursor for every write: ``Connection.execute`` makes a cursor per call.
        with self._lock:
            return self._writer.execute(sql, args).rowcount

    # -- agents ---------------------------------------------------------------

    def insert_agent(
        self,
        name: str,
        display_name: str,
        max_ttl: int,
        scopes: list[str],
        session_bus: bool = False,
    ) -> None:
        self._run(
            "INSERT INTO agents (name, display_name, max_ttl, created_at, session_bus) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, display_name, max_ttl, time.time(), int(session_bus)),
        )
        with self._lock:
            self._conn.executemany(
                "INSERT INTO agent_scopes (agent, scope) VALUES (?, ?)",
                [(name, s) for s in scopes],
            )
            self._agents.clear()

    def agent(self, name: str) -> AgentRow | None:
        with self._lock:  # read and cache under the lock writers hold: no stale entry
            if name not in self._agents:
                self._agents[name] = self._read_agent(name)
            return self._agents[name]

    def _read_agent(self, name: str) -> AgentRow | None:
        row = self._one("SELECT * FROM agents WHERE name = ?", (name,))
        if row is None:
            return None
        scopes = self._all("SELECT scope FROM agent_scopes WHERE agent = ? ORDER BY scope", (name,))
        values = dict(row)
        values["session_bus"] = bool(values.get("session_bus"))
        return AgentRow(**values, scopes=tuple(r["scope"] for r in scopes))

    def agents(self) -> list[AgentRow]:
        names = [r["name"] for r in self._all("SELECT name FROM agents ORDER BY name")]
        return [a for a in (self.agent(n) for n in names) if a is not None]

    def delete_agent(self, name: str) -> bool:
        with self._lock:
            self._agents.clear()
            return self._run("DELETE FROM agents WHERE name = ?", (name,)) > 0

    def set_agent_disabled(self, name: str, reason: str | None) -> bool:
        disabled_at = time.time() if reason is not None else None
        with self._lock:
            self._agents.clear()
            changed = self._run(
                "UPDATE agents SET disabled_at = ?, disabled_reason = ? WHERE name = ?",
                (disabled_at, reason, name),
            )
            return changed > 0

    def set_agent_session_bus(self, name: str, allowed: bool) -> bool:
        with self._lock:
            self._agents.clear()
            changed = self._run(
                "UPDATE agents SET session_bus = ? WHERE name = ?", (int(allowed), name)
            )
            return changed > 0

    # -- signing keys ---------------------------------------------------------

    def insert_key(
        self,
        kid: str,
        public_jwk: dict[str, Any],
        storage: str,
        alg: str = "ES256",
        signs_from: float | None = None,
    ) -> None:
        self._run(
            "INSERT INTO signing_keys (kid, public_jwk, storage, created_at, alg, signs_from) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (kid, json.dumps(public_jwk), storage, time.time(), alg, signs_from),
        )

    def unretired_keys(self) -> list[KeyRow]:
        """Every key whose private half may still exist, oldest first."""
        rows = self._all(
            f"SELECT {KEY_COLUMNS} FROM signing_keys WHERE retired_at IS NULL "
            "ORDER BY created_at, kid"
        )
        return [key_row(r) for r in rows]

    def mark_keys_retiring(self, kids: list[str], at: float) -> None:
        """Step 1 of retirement: the key no longer signs (its private half is still to go)."""
        for kid in kids:
            self._run(
                "UPDATE signing_keys SET retiring_at = ? WHERE kid = ? AND retiring_at IS NULL",
                (at, kid),
            )

    def mark_key_retired(self, kid: str, at: float) -> None:
        """Step 2 of retirement: its private half is deleted."""
        self._run(
            "UPDATE signing_keys SET retiring_at = COALESCE(retiring_at, ?), retired_at = ? "
            "WHERE kid = ?",
            (at, at, kid),
        )

    def published_keys(self, now: float, keep: float) -> list[KeyRow]:
        """Keys for the JWKS: unretired ones (about to sign, signing, retiring), and
        retired ones that stopped signing less than ``keep`` seconds ago or signed a
        credential that has not expired."""
        rows = self._all(
            f"SELECT {KEY_COLUMNS} FROM signing_keys k WHERE retired_at IS NULL "
            "OR retiring_at > ? "
            "OR EXISTS (SELECT 1 FROM credentials c WHERE c.kid = k.kid AND c.expires_at > ?) "
            "ORDER BY created_at DESC, kid",
            (now - keep, now),
        )
        return [key_row(r) for r in rows]
