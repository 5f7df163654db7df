"""The store: the one module that speaks SQL.

One connection, guarded by a re-entrant lock: SQLite serialises writers anyway,
and the audit chain needs appends in a single order. WAL lets the file be read
(by ``sqlite3`` or a backup) while the daemon writes.
"""

from __future__ import annotations

import contextlib
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
from kontextd.store.credential_sql import CredentialTable
from kontextd.store.rows import AgentRow

T = TypeVar("T")


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


# SQLite's default autocheckpoint mark: 1,000 pages of 4 KiB (wal_autocheckpoint).
WAL_CHECKPOINT_BYTES = 1000 * 4096
# A WAL file that grew past this (a burst of writes) is cut back to it once it starts
# over; below it the file keeps its size and is written again from the start.
WAL_KEEP_BYTES = 16 * WAL_CHECKPOINT_BYTES


class Store(CredentialTable):
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
            self._writer = self._conn.cursor()
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
        self._live: dict[str, tuple[Any, ...]] = {}  # rows as plain tuples (credential_sql)
        # Parents (credential or user-token jtis) this daemon minted a child from. Every
        # live credential was minted by this daemon (a restart ends them all), so a
        # parent not in here has no live child: a lease's end skips the query.
        self._parents: set[str] = set()
        self._checkpointed = -1  # the connection's total_changes at the last checkpoint
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

    def checkpoint_elsewhere(self) -> None:
        """Stop SQLite checkpointing the WAL inside this connection's commits.

        By default a COMMIT that takes the WAL past 1,000 pages copies it into the
        database and syncs both files (sqlite.org/wal.html#ckpt), on the committing
        thread: the loopback loop, whose every request then waits for the disk
        (a 4-33 ms stall every few hundred ``/token`` exchanges, measured with
        strace). The daemon's reaper calls ``checkpoint_if_due`` instead, off the
        loop; a connection's close still checkpoints, as before."""
        with self._lock:
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            # Not SQLite's "cut to N bytes whenever the WAL starts over": cutting a
            # 70 MB WAL and growing it again cost the next commits on the loop up to
            # ~30 ms (bench/FINDINGS.md); a WAL kept at its size is overwritten in place.
            self._conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")

    def checkpoint_if_due(self) -> bool:
        """Copy the WAL into the database if anything was committed since the last
        call (the reaper's, four times a second), so the WAL starts over each time.

        First PASSIVE on a connection of its own, no lock of ours held while it copies
        and syncs; then once more holding the store's lock, which copies only what was
        committed meanwhile: with no writer between it and the next commit, that
        commit starts the WAL over (sqlite.org/wal.html#ckpt). Without the second
        step, steady writes never let a checkpoint catch up and the WAL only grows.
        A commit is thus synced to the disk within about a quarter of a second."""
        if self._conn.total_changes == self._checkpointed or self.file.check() is not None:
            return False  # nothing new, or the file is gone: a connection would make one
        audit_sql.make_durable(self.path)
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._checkpointed = self._conn.total_changes
        return True

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Hold the write lock and one SQLite transaction; roll back on any error.

        Inside ``batch()`` this is a savepoint of the batch's transaction: it
        rolls back alone, and becomes durable when the batch commits."""
        with self._lock:
            if self._batch is not None:
                # ``yield from``, not a nested ``with``: one context manager per
                # issuance instead of two (an exception still reaches ``_savepoint``).
                yield from self._savepoint(self)
                return
            last_hash, next_id = self._last_hash, self._next_id
            self._ending.clear()
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                yield self
                self._guard()
                self._writer.execute("COMMIT")
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

    def _savepoint(self, value: Store) -> Iterator[Store]:
        """One ``transaction()`` inside a batch (SQLite SAVEPOINT, §"Transactions"):
        a generator that yields ``value`` once, for ``transaction`` to delegate to.

        The batch's first writer needs no savepoint: the SQLite transaction it
        begins holds only its writes, so undoing them is a ROLLBACK (two statements
        fewer for every batch, which with one client is every request)."""
        if self._batch_lost is not None:
            raise self._write_error(self._batch_lost)
        first = not self._conn.in_transaction
        self._writer.execute("BEGIN IMMEDIATE" if first else "SAVEPOINT tx")
        last_hash, next_id = self._last_hash, self._next_id
        self._ending.clear()
        try:
            yield value
            if not first:
                self._writer.execute("RELEASE tx")
        except BaseException as exc:
            self._undo(first, exc)
            self._restore(last_hash, next_id, self._ending)
            if _write_failure(exc):
                raise self._write_error(exc) from exc
            raise
        assert self._batch is not None
        self._batch.update(self._ending)

    def _undo(self, first: bool, exc: BaseException) -> None:
        """Undo one failed ``_savepoint``'s writes; the batch fails if that cannot be
        done alone (what is committed must never hold half of a transaction)."""
        if first:
            with contextlib.suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            if self._conn.in_transaction:
                self._batch_lost = exc  # the ROLLBACK failed: its writes may still be there
            return
        if not self._conn.in_transaction:
            # SQLite rolled the whole transaction back (SQLITE_FULL, IOERR): the
            # batch's earlier savepoints are gone too, so the batch must fail.
            self._batch_lost = exc
        try:
            self._conn.execute("ROLLBACK TO tx")
            self._conn.execute("RELEASE tx")
        except sqlite3.Error:
            if self._conn.in_transaction:
                self._batch_lost = exc

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
                    self._writer.execute("COMMIT")
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
                self._writer.execute("BEGIN IMMEDIATE")
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
