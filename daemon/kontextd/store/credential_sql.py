"""The credentials table, with each live credential's end on the monotonic clock.

A base of ``db.Store``: the store's ``__init__`` sets the in-memory state these
methods keep beside the table (see the comments there), and a rollback clears it.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import Any

from kontextd.store.rows import CRED_COLUMN_COUNT, CRED_COLUMNS, CredentialRow, credential_row
from kontextd.store.tables import Tables

# Where ``_live``'s plain tuples keep the fields the hot paths read.
_STATUS = CredentialRow._fields.index("status")
_EXPIRES_AT = CredentialRow._fields.index("expires_at")

DUE_CHUNK = 500  # jtis per query when the monotonic clock says credentials are due


class CredentialTable(Tables):
    """Insert, read, end and find due credentials."""

    _ended_unsaved: dict[str, str]
    _ending: dict[str, str]
    _deadlines: dict[str, float]
    _due_order: list[tuple[float, str]]
    # Plain tuples, not rows: a tuple of strings and numbers is not tracked by the
    # garbage collector, a row (a tuple subclass) always is. With ~4,000 /token
    # exchanges a second, tens of thousands of live rows made each full collection
    # 25-200 ms long and several a second (bench/FINDINGS.md).
    _live: dict[str, tuple[Any, ...]]
    _parents: set[str]

    # -- credentials ----------------------------------------------------------

    def insert_credential(self, cred: CredentialRow) -> None:
        deadline = time.monotonic() + (cred.expires_at - cred.issued_at)
        self._deadlines[cred.jti] = deadline
        heapq.heappush(self._due_order, (deadline, cred.jti))
        self._live[cred.jti] = tuple(cred)
        if cred.parent is not None:
            self._parents.add(cred.parent)
        self._run(
            f"INSERT INTO credentials ({CRED_COLUMNS}) "
            f"VALUES ({', '.join('?' * CRED_COLUMN_COUNT)})",
            (
                cred.jti,
                cred.agent,
                cred.user,
                " ".join(cred.scopes),
                " ".join(cred.audience),
                cred.target,
                cred.kid,
                cred.issued_at,
                cred.expires_at,
                cred.status,
                cred.ended_at,
                cred.end_reason,
                cred.wrapper_pid,
                cred.child_pid,
                cred.child_start,
                cred.kind,
                cred.client_id,
                cred.parent,
                cred.grant_id,
                cred.act,
            ),
        )

    def credential(self, jti: str) -> CredentialRow | None:
        with self._lock:
            cached = self._live.get(jti)
            if cached is not None:
                return CredentialRow._make(cached)
            row = self._one(f"SELECT {CRED_COLUMNS} FROM credentials WHERE jti = ?", (jti,))
            return credential_row(row) if row else None

    def credential_status(self, jti: str) -> tuple[str, float] | None:
        """(status, expires_at) — the hot path of introspection and the gateway.

        A credential this daemon inserted and has not ended is answered from memory
        (``_live``: every end pops it before its UPDATE, a rollback clears it); the
        rest from the table."""
        unsaved = self._ended_unsaved.get(jti)
        if unsaved is not None:
            return (unsaved, 0.0)
        cached = self._live.get(jti)
        if cached is not None:
            status, expires_at = cached[_STATUS], cached[_EXPIRES_AT]
        else:
            row = self._one("SELECT status, expires_at FROM credentials WHERE jti = ?", (jti,))
            if row is None:
                return None
            status, expires_at = row["status"], row["expires_at"]
        if self._deadlines.get(jti, math.inf) <= time.monotonic():
            return (status, 0.0)  # past its TTL, whatever the wall clock says
        return (status, expires_at)

    def live_credentials(self, agent: str | None = None) -> list[CredentialRow]:
        sql = f"SELECT {CRED_COLUMNS} FROM credentials WHERE status = 'live'"
        args: tuple[Any, ...] = ()
        if agent is not None:
            sql, args = sql + " AND agent = ?", (agent,)
        return [credential_row(r) for r in self._all(sql + " ORDER BY issued_at", args)]

    def live_children(self, parent: str) -> list[CredentialRow]:
        """Live credentials exchanged from ``parent`` (a credential's or a user token's jti)."""
        if parent not in self._parents:
            return []
        rows = self._all(
            f"SELECT {CRED_COLUMNS} FROM credentials WHERE parent = ? AND status = 'live'",
            (parent,),
        )
        return [credential_row(r) for r in rows]

    def live_under_grants(self, grant_ids: list[str]) -> list[CredentialRow]:
        """Live credentials that the consent grants ``grant_ids`` allowed."""
        if not grant_ids:
            return []
        rows = self._all(
            f"SELECT {CRED_COLUMNS} FROM credentials WHERE status = 'live' "
            f"AND grant_id IN ({', '.join('?' * len(grant_ids))})",
            tuple(grant_ids),
        )
        return [credential_row(r) for r in rows]

    def seconds_left(self, cred: CredentialRow) -> float:
        """How long ``cred`` has left: the sooner of its ``exp`` on the wall clock and
        its end on the monotonic clock (a child must never outlive its parent, whatever
        the wall clock says)."""
        left = cred.expires_at - time.time()
        deadline = self._deadlines.get(cred.jti)
        if deadline is not None:
            left = min(left, deadline - time.monotonic())
        return left

    def due_credentials(self, now: float) -> list[CredentialRow]:
        """Live credentials past ``exp`` on the wall clock or past their TTL on the
        monotonic clock (the wall clock may have been set back)."""
        mono = time.monotonic()
        overdue: list[str] = []
        with self._lock:
            while self._due_order and self._due_order[0][0] <= mono:
                overdue.append(heapq.heappop(self._due_order)[1])
        rows = self._all(
            f"SELECT {CRED_COLUMNS} FROM credentials WHERE status = 'live' AND expires_at <= ?",
            (now,),
        )
        seen = {row["jti"] for row in rows}
        for start in range(0, len(overdue), DUE_CHUNK):  # within SQLite's variable limit
            some = [jti for jti in overdue[start : start + DUE_CHUNK] if jti not in seen]
            if some:
                rows += self._all(
                    f"SELECT {CRED_COLUMNS} FROM credentials WHERE status = 'live' "
                    f"AND jti IN ({', '.join('?' * len(some))})",
                    tuple(some),
                )
        for jti in overdue:  # ended now, or already ended another way
            self._deadlines.pop(jti, None)
        return [credential_row(r) for r in rows]

    def end_credential(self, jti: str, status: str, reason: str) -> bool:
        """Mark a live credential revoked or expired; False if it was not live."""
        self._ending[jti] = status
        self._live.pop(jti, None)
        changed = self._run(
            "UPDATE credentials SET status = ?, ended_at = ?, end_reason = ? "
            "WHERE jti = ? AND status = 'live'",
            (status, time.time(), reason, jti),
        )
        return changed > 0

    def set_child(self, jti: str, pid: int, start: str | None) -> None:
        with self._lock:
            cached = self._live.pop(jti, None)
            self._run(
                "UPDATE credentials SET child_pid = ?, child_start = ? WHERE jti = ?",
                (pid, start, jti),
            )
            if cached is not None:  # still live: keep answering it from memory
                row = CredentialRow._make(cached)._replace(child_pid=pid, child_start=start)
                self._live[jti] = tuple(row)
