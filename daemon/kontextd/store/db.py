"""The store: the one module that speaks SQL.

One connection, guarded by a re-entrant lock: SQLite serialises writers anyway,
and the audit chain needs appends in a single order. WAL lets the file be read
(by ``sqlite3`` or a backup) while the daemon writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kontext.common import wire
from kontextd.audit import chain
from kontextd.audit.context import VIA
from kontextd.errors import ApiError
from kontextd.store import audit_sql, migrations, presence
from kontextd.store.rows import (
    CRED_COLUMN_COUNT,
    CRED_COLUMNS,
    KEY_COLUMNS,
    AgentRow,
    CredentialRow,
    KeyRow,
    credential_row,
    key_row,
)

T = TypeVar("T")
DUE_CHUNK = 500  # jtis per query when the monotonic clock says credentials are due


class StoreError(RuntimeError):
    """The database cannot be opened or written (corrupt, read-only, disk full)."""


class StoreWriteError(StoreError, ApiError):
    """A write failed (disk full, read-only, I/O error) and was rolled back: nothing
    changed. The API answers 503 with the message; the caller may retry later."""

    def __init__(self, message: str) -> None:
        ApiError.__init__(self, wire.STORAGE, message)

    @property
    def status(self) -> int:
        return 503


def _write_failure(exc: BaseException) -> bool:
    """SQLite's "cannot write now" errors, not a bug in our SQL (those stay 500s)."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


class Store:
    """All reads and writes of the kontext database."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self.schema_version = migrations.apply(self._conn)
        except (sqlite3.DatabaseError, migrations.SchemaTooNew) as exc:
            # WAL needs to write beside the file even to read it: say why it cannot.
            where = os.path.dirname(path)
            hint = "" if os.access(where, os.W_OK) else f" ({where} is read-only)"
            raise StoreError(f"cannot open database {path}: {exc}{hint}") from exc
        os.chmod(path, 0o600)
        self.path = path
        # Removed or replaced under us, the file must not take writes that vanish.
        self.file = presence.FileWatch(path)
        self._lock = threading.RLock()
        # Credentials whose end could not be written (disk full): dead in memory at
        # once, so introspection and the gateway refuse them; persisted on a later try.
        self._ended_unsaved: dict[str, str] = {}
        self._ending: dict[str, str] = {}
        # Each credential's end on the monotonic clock: a wall clock set back (or
        # forward, then back) must not let a token outlive its TTL (SECURITY.md).
        self._deadlines: dict[str, float] = {}
        self._due_order: list[tuple[float, str]] = []  # the same, as a heap (soonest first)
        self._last_hash = self._tail_hash()
        # The daemon is the only writer: the next event id and the agents are
        # kept in memory (agents are read on every issuance and lease end).
        self._next_id = self.last_event_id() + 1
        self._agents: dict[str, AgentRow | None] = {}
        # Inside batch(): the credentials its savepoints ended (see _savepoint).
        self._batch: dict[str, str] | None = None
        # Reads of rarely written rows (the login session, consent grants) that every
        # issuance makes; dropped on any write to them (oauth_sql) and on rollback.
        self._reads: dict[Any, Any] = {}
        # Credentials this daemon inserted and has not ended or changed since: a lease's
        # end reads its row from here instead of the table (dropped on rollback).
        self._live: dict[str, CredentialRow] = {}
        # Parents (credential or user-token jtis) this daemon minted a child from. Every
        # live credential was minted by this daemon (a restart ends them all), so a
        # parent not in here has no live child: a lease's end skips the query.
        self._parents: set[str] = set()
        self._batch_lost: BaseException | None = None
        self.appended = threading.Condition(self._lock)
        # Called (on the committing thread) after every commit: the loopback loop's
        # SSE feed wakes its streams from here, with no thread per stream.
        self.commit_listeners: list[Callable[[], None]] = []
        # Fields every audit event carries while they are set: a CI session's
        # workload (repository, ref, workflow, run), set by ``oauth.session``.
        self.event_fields: dict[str, Any] = {}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Hold the write lock and one SQLite transaction; roll back on any error.

        Inside ``batch()`` this is a savepoint of the batch's transaction: it
        rolls back alone, and becomes durable when the batch commits."""
        with self._lock:
            if self._batch is not None:
                with self._savepoint():
                    yield self
                return
            last_hash, next_id = self._last_hash, self._next_id
            self._ending.clear()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield self
                self._guard()
                self._conn.execute("COMMIT")
            except BaseException as exc:
                self._rolled_back(last_hash, next_id, self._ending)
                if _write_failure(exc):
                    raise self._write_error(exc) from exc
                raise
            self._committed(self._ending)

    def _guard(self) -> None:
        """Before a commit: the path must still be the file we write (``presence``).
        Raising here rolls the writes back like a full disk: nothing is half done, and a
        credential whose end this was is dead in memory all the same."""
        lost = self.file.check()
        if lost is not None:
            raise StoreWriteError(lost)

    def _rolled_back(self, last_hash: str, next_id: int, ending: dict[str, str]) -> None:
        if self._conn.in_transaction:
            # SQLite may have rolled back itself already (SQLITE_FULL).
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
        self._restore(last_hash, next_id, ending)

    def _restore(self, last_hash: str, next_id: int, ending: dict[str, str]) -> None:
        """Memory as before the rolled-back writes: chain tail, next id, no cached rows;
        credentials whose end was not stored are dead in memory until it is."""
        self._last_hash, self._next_id = last_hash, next_id
        self._forget_rolled_back()
        self._ended_unsaved.update(ending)

    def _forget_rolled_back(self) -> None:
        """Cached rows may hold a change that was just rolled back: read them again."""
        self._agents.clear()
        self._reads.clear()
        self._live.clear()

    def cached(self, key: Any, fill: Callable[[], T]) -> T:
        """``fill()``'s result, kept until ``forget_reads`` or a rollback.

        For rows every issuance reads and hardly anything writes; the caller
        (``oauth_sql``) calls ``forget_reads`` on each write to them."""
        with self._lock:
            if key not in self._reads:
                self._reads[key] = fill()
            value: T = self._reads[key]
            return value

    def forget_reads(self) -> None:
        with self._lock:
            self._reads.clear()

    def _committed(self, ending: dict[str, str]) -> None:
        for jti in ending:
            self._ended_unsaved.pop(jti, None)
            self._parents.discard(jti)  # ended for good: no child can come from it now
        self.appended.notify_all()
        for listener in self.commit_listeners:
            listener()

    def _write_error(self, exc: BaseException) -> StoreWriteError:
        return StoreWriteError(
            f"cannot write the database {self.path}: {exc}; nothing was changed "
            "(free space on its disk or make it writable, then retry)"
        )

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        """One ``transaction()`` inside a batch (SQLite SAVEPOINT, §"Transactions")."""
        if self._batch_lost is not None:
            raise self._write_error(self._batch_lost)
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")
        last_hash, next_id = self._last_hash, self._next_id
        self._ending.clear()
        self._conn.execute("SAVEPOINT tx")
        try:
            yield
            self._conn.execute("RELEASE tx")
        except BaseException as exc:
            if not self._conn.in_transaction:
                # SQLite rolled the whole transaction back (SQLITE_FULL, IOERR): the
                # batch's earlier savepoints are gone too, so the batch must fail.
                self._batch_lost = exc
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK TO tx")
                self._conn.execute("RELEASE tx")
            self._restore(last_hash, next_id, self._ending)
            if _write_failure(exc):
                raise self._write_error(exc) from exc
            raise
        assert self._batch is not None
        self._batch.update(self._ending)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every ``transaction()`` in the block shares one SQLite
        transaction, committed (once, if anything was written) when the block ends.

        Callers must not reveal a write's result (e.g. answer a client) before the
        block has ended without raising; if the commit fails, every write in the
        block is undone and ``StoreWriteError`` is raised."""
        with self._lock:
            if self._batch is not None:
                yield  # already batching: the outer block commits
                return
            last_hash, next_id = self._last_hash, self._next_id
            self._batch = {}
            try:
                yield
                if self._batch_lost is not None:
                    raise self._batch_lost
                if self._conn.in_transaction:
                    self._guard()
                    self._conn.execute("COMMIT")
            except BaseException as exc:
                self._batch_lost = None
                ending, self._batch = self._batch, None
                self._rolled_back(last_hash, next_id, ending)
                if _write_failure(exc):
                    raise self._write_error(exc) from exc
                raise
            ending, self._batch = self._batch, None
            self._committed(ending)

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, for the queries in ``audit_sql``."""
        with self._lock:
            yield self._conn

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, args).rowcount

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

    # -- credentials ----------------------------------------------------------

    def insert_credential(self, cred: CredentialRow) -> None:
        deadline = time.monotonic() + (cred.expires_at - cred.issued_at)
        self._deadlines[cred.jti] = deadline
        heapq.heappush(self._due_order, (deadline, cred.jti))
        self._live[cred.jti] = cred
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
                return cached
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
            status, expires_at = cached.status, cached.expires_at
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
                self._live[jti] = dataclasses.replace(cached, child_pid=pid, child_start=start)

    # -- audit ----------------------------------------------------------------

    def _tail_hash(self) -> str:
        row = self._one("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1")
        return row["hash"] if row else chain.GENESIS

    def append_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Append one audit event to the chain; call inside ``transaction()``."""
        assert self._conn.in_transaction, "audit appends belong to a transaction"
        record = {
            "id": self._next_id,
            "ts": round(time.time(), 6),
            **event,
            "prev_hash": self._last_hash,
        }
        via = VIA.get()
        if via is not None:  # the change came through e.g. the dashboard (audit.context)
            record["via"] = via
        for key, value in self.event_fields.items():  # e.g. a CI session's workload
            record.setdefault(key, value)
        body = chain.canonical(record)
        digest = chain.digest(body)
        agent = event.get("agent", {}).get("id") if isinstance(event.get("agent"), dict) else None
        self._run(
            "INSERT INTO audit_events (id, ts, event, agent, body, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record["id"],
                record["ts"],
                record["event"],
                agent,
                body.decode(),
                self._last_hash,
                digest,
            ),
        )
        self._last_hash = digest
        self._next_id += 1
        return record

    def append_in_batch(self, event: dict[str, Any]) -> None:
        """Append one audit event inside ``batch()`` without a savepoint of its own: a
        single INSERT is atomic, and the chain's tail moves only once it succeeded. For
        writes no one waits on (a gateway call's ``api.call``), two statements fewer."""
        with self._lock:
            assert self._batch is not None, "append_in_batch belongs to a batch"
            if self._batch_lost is not None:
                raise self._write_error(self._batch_lost)
            if not self._conn.in_transaction:
                self._conn.execute("BEGIN IMMEDIATE")
            try:
                self.append_event(event)
            except BaseException as exc:
                if not self._conn.in_transaction:
                    self._batch_lost = exc  # SQLite rolled the whole batch back (SQLITE_FULL)
                if _write_failure(exc):
                    raise self._write_error(exc) from exc
                raise

    def events_after(
        self, after: int, limit: int, flt: audit_sql.AuditFilter
    ) -> list[dict[str, Any]]:
        with self._lock:
            return audit_sql.events_after(self._conn, after, limit, flt)

    def events_last(self, count: int, flt: audit_sql.AuditFilter) -> list[dict[str, Any]]:
        with self._lock:
            return audit_sql.events_last(self._conn, count, flt)

    def last_event_id(self) -> int:
        row = self._one("SELECT COALESCE(MAX(id), 0) AS last FROM audit_events")
        return int(row["last"]) if row else 0
