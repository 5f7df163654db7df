"""The audit log's SQL beyond the append: filters, checkpoints, pruning, read-only access.

Part of the store (the one package that speaks SQL). Functions take a
connection so the daemon's ``Store`` (under its lock) and the CLI's read-only
verifier (``open_readonly``) share the same queries.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

EVENT_TRIGGERS = {
    "audit_no_delete": "BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "audit_checkpoints_no_delete": "BEFORE DELETE ON audit_checkpoints "
    "BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END",
}


@dataclass(frozen=True)
class AuditFilter:
    """Which events ``audit tail`` shows; every field optional."""

    agent: str | None = None
    user: str | None = None
    event: str | None = None
    since: float | None = None
    until: float | None = None

    def where(self) -> tuple[str, list[Any]]:
        """SQL conditions (joined with AND, each bound) and their arguments."""
        parts: list[str] = []
        args: list[Any] = []
        for sql, value in (
            ("agent = ?", self.agent),
            ("json_extract(body, '$.user.id') = ?", self.user),
            ("event = ?", self.event),
            ("ts >= ?", self.since),
            ("ts < ?", self.until),
        ):
            if value is not None:
                parts.append(sql)
                args.append(value)
        return " AND ".join(parts), args


class EventRow(NamedTuple):
    """One stored event exactly as written: the canonical body and the link columns.

    A named tuple, so the verifier can walk sqlite's own row tuples (see
    ``event_rows``) and exported rows alike without building an object per row.
    """

    id: int
    body: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class CheckpointRow:
    """A signed statement "event ``event_id`` has hash ``event_hash``" (or a prune anchor)."""

    id: int
    event_id: int
    event_hash: str
    ts: float
    kind: str
    kid: str
    jws: str


def _decoded(rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    return [{**json.loads(r[0]), "hash": r[1]} for r in rows]


def events_last(conn: sqlite3.Connection, count: int, flt: AuditFilter) -> list[dict[str, Any]]:
    where, args = flt.where()
    sql = "SELECT body, hash FROM audit_events" + (f" WHERE {where}" if where else "")
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, count)).fetchall()
    return _decoded(list(reversed(rows)))


def events_after(
    conn: sqlite3.Connection, after: int, limit: int, flt: AuditFilter
) -> list[dict[str, Any]]:
    where, args = flt.where()
    sql = "SELECT body, hash FROM audit_events WHERE id > ?" + (f" AND {where}" if where else "")
    return _decoded(conn.execute(sql + " ORDER BY id LIMIT ?", (after, *args, limit)).fetchall())


def event_rows(
    conn: sqlite3.Connection, after: int = 0, through: int | None = None
) -> Iterator[tuple[int, str, str, str]]:
    """Every event after ``after`` (up to ``through``), in id order, as
    ``(id, body, prev_hash, hash)``.

    One statement, streamed: sqlite hands rows over as the cursor is iterated,
    so a million rows never sit in a list and no object is built per row.
    """
    bound = "" if through is None else " AND id <= ?"
    extra: tuple[Any, ...] = () if through is None else (through,)
    return conn.execute(
        f"SELECT id, body, prev_hash, hash FROM audit_events WHERE id > ?{bound} ORDER BY id",
        (after, *extra),
    )


def iter_events(
    conn: sqlite3.Connection, after: int = 0, through: int | None = None
) -> Iterator[EventRow]:
    """``event_rows`` as ``EventRow``s."""
    return map(EventRow._make, event_rows(conn, after, through))


def last_id_before(conn: sqlite3.Connection, until: float | None) -> int | None:
    """The newest event id (older than ``until``, if given)."""
    found = last_event(conn, until)
    return found[0] if found else None


def covering_checkpoint(conn: sqlite3.Connection, event_id: int) -> int | None:
    """The first event at or after ``event_id`` that a checkpoint signs."""
    row = conn.execute(
        "SELECT MIN(event_id) FROM audit_checkpoints WHERE event_id >= ? AND kind = 'checkpoint'",
        (event_id,),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def first_id_since(conn: sqlite3.Connection, since: float) -> int:
    """The id before the first event at or after ``since`` (for ``iter_events``)."""
    row = conn.execute("SELECT MIN(id) FROM audit_events WHERE ts >= ?", (since,)).fetchone()
    return int(row[0]) - 1 if row and row[0] is not None else 2**62


def last_event(conn: sqlite3.Connection, before_ts: float | None = None) -> tuple[int, str] | None:
    """(id, hash) of the newest event, or of the newest one older than ``before_ts``."""
    if before_ts is None:
        row = conn.execute("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
    else:
        row = conn.execute(
            "SELECT id, hash FROM audit_events WHERE ts < ? ORDER BY id DESC LIMIT 1", (before_ts,)
        ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def first_event_id(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT MIN(id) FROM audit_events").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def event_at(conn: sqlite3.Connection, event_id: int) -> tuple[int, str] | None:
    """(id, hash) of one event."""
    row = conn.execute("SELECT id, hash FROM audit_events WHERE id = ?", (event_id,)).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def insert_checkpoint(conn: sqlite3.Connection, cp: CheckpointRow) -> int:
    cur = conn.execute(
        "INSERT INTO audit_checkpoints (event_id, event_hash, ts, kind, kid, jws) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (cp.event_id, cp.event_hash, cp.ts, cp.kind, cp.kid, cp.jws),
    )
    return int(cur.lastrowid or 0)


def checkpoints(conn: sqlite3.Connection, since_event: int = 0) -> list[CheckpointRow]:
    rows = conn.execute(
        "SELECT id, event_id, event_hash, ts, kind, kid, jws FROM audit_checkpoints "
        "WHERE event_id >= ? ORDER BY event_id, id",
        (since_event,),
    ).fetchall()
    return [CheckpointRow(*r) for r in rows]


def first_uncovered_ts(conn: sqlite3.Connection, covered: int) -> float | None:
    """The time of the first event after ``covered`` (the newest checkpointed id)."""
    row = conn.execute(
        "SELECT ts FROM audit_events WHERE id > ? ORDER BY id LIMIT 1", (covered,)
    ).fetchone()
    return float(row[0]) if row else None


def uncovered_span(conn: sqlite3.Connection, covered: int) -> tuple[float, float]:
    """The earliest and latest time claimed by events after ``covered`` (some must exist)."""
    row = conn.execute(
        "SELECT MIN(ts), MAX(ts) FROM audit_events WHERE id > ?", (covered,)
    ).fetchone()
    return float(row[0]), float(row[1])


def stop_after(conn: sqlite3.Connection, after: int) -> int | None:
    """The id of the first ``daemon.stopped`` event after ``after``, if any."""
    row = conn.execute(
        "SELECT MIN(id) FROM audit_events WHERE id > ? AND event = 'daemon.stopped'", (after,)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def key_storages(conn: sqlite3.Connection) -> set[str]:
    """Where the database says its signing keys' private halves were kept."""
    return {str(r[0]) for r in conn.execute("SELECT DISTINCT storage FROM signing_keys")}


def make_durable(path: str) -> None:
    """Sync committed transactions to the disk now, before something outside the
    database (the pinned anchor) names them: with ``synchronous=NORMAL`` a power
    loss may undo the last commits until the WAL is next synced, which a WAL
    checkpoint does first (sqlite.org/pragma.html#pragma_synchronous).

    On a connection of its own, so the store's lock (and every append) is not
    held while it syncs; PASSIVE never waits for other connections."""
    # mode=rw: never create the file (one removed under the daemon stays removed).
    conn = sqlite3.connect(_uri(path, "rw"), uri=True, timeout=5)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()


def checkpoint_row(conn: sqlite3.Connection, cp_id: int) -> CheckpointRow | None:
    row = conn.execute(
        "SELECT id, event_id, event_hash, ts, kind, kid, jws FROM audit_checkpoints WHERE id = ?",
        (cp_id,),
    ).fetchone()
    return CheckpointRow(*row) if row else None


def last_checkpointed(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(event_id), 0) FROM audit_checkpoints").fetchone()
    return int(row[0])


def public_keys(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Every signing key's public JWK by kid (kept forever, retired or not)."""
    rows = conn.execute("SELECT kid, public_jwk FROM signing_keys").fetchall()
    return {str(r[0]): json.loads(r[1]) for r in rows}


def prune_through(conn: sqlite3.Connection, event_id: int) -> int:
    """Delete events (and checkpoints) up to ``event_id``; call inside a transaction.

    The append-only triggers are dropped and re-created within the same
    transaction, so no other connection ever sees the log without them.
    """
    assert conn.in_transaction, "pruning belongs to a transaction"
    for name in EVENT_TRIGGERS:
        conn.execute(f"DROP TRIGGER {name}")
    deleted = conn.execute("DELETE FROM audit_events WHERE id <= ?", (event_id,)).rowcount
    conn.execute(
        "DELETE FROM audit_checkpoints WHERE event_id < ? OR (event_id = ? AND kind != 'anchor')",
        (event_id, event_id),
    )
    for name, body in EVENT_TRIGGERS.items():
        conn.execute(f"CREATE TRIGGER {name} {body}")
    return int(deleted)


def open_readonly(path: str) -> sqlite3.Connection:
    """Open the database for reading only (``mode=ro``): verifying must change nothing."""
    conn = sqlite3.connect(_uri(path, "ro"), uri=True)
    conn.execute("PRAGMA query_only=ON")
    return conn


def _uri(path: str, mode: str) -> str:
    """An SQLite URI that opens ``path`` in ``mode`` and never creates it; the path is
    percent-encoded, so a ``?``, ``#`` or ``%`` in a home's name is part of the name
    (sqlite.org/uri.html)."""
    return f"file:{urllib.parse.quote(path)}?mode={mode}"
