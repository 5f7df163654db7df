"""The dashboard's reads of the audit log: raw rows for its event stream, activity counts.

Part of the store (the one package that speaks SQL). Like ``audit_sql``, functions
take a connection: the live stream reads through the daemon's own connection
(``Store.connection``, cheap indexed queries), the heavier summaries through a
read-only connection of their own (``audit_sql.open_readonly``) on an executor
thread, so a dashboard never holds the store's lock while it counts.

Rows are handed out as stored — the canonical JSON body as text, never parsed
here — so an event goes to every open dashboard without being decoded and
encoded again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from kontextd.store.rows import CRED_COLUMNS, CredentialRow


class RawEvent(NamedTuple):
    """One audit row: its id, event name, agent column (``agent:NAME`` or None), body."""

    id: int
    event: str
    agent: str | None
    body: str


@dataclass(frozen=True)
class EventSelection:
    """Which events a dashboard asked for: one agent (``agent:NAME``), some names."""

    agent: str | None = None
    events: frozenset[str] | None = None  # None: every name
    exclude: frozenset[str] = frozenset()  # names left out (the "other" outcome)

    def where(self) -> tuple[str, list[Any]]:
        parts: list[str] = []
        args: list[Any] = []
        if self.agent is not None:
            parts.append("agent = ?")
            args.append(self.agent)
        if self.events is not None:
            names = sorted(self.events) or [""]  # an empty choice matches nothing
            parts.append(f"event IN ({', '.join('?' * len(names))})")
            args.extend(names)
        if self.exclude:
            names = sorted(self.exclude)
            parts.append(f"event NOT IN ({', '.join('?' * len(names))})")
            args.extend(names)
        return " AND ".join(parts), args

    def matches(self, row: RawEvent) -> bool:
        """The same test in Python, for rows already read (the live stream's fan-out)."""
        return (
            (self.agent is None or row.agent == self.agent)
            and (self.events is None or row.event in self.events)
            and row.event not in self.exclude
        )


def _between(after: int, upto: int, selection: EventSelection) -> tuple[str, list[Any]]:
    """The ``WHERE`` of the events ``selection`` matches with ids in (``after``, ``upto``]."""
    where, args = selection.where()
    return "id > ? AND id <= ?" + (f" AND {where}" if where else ""), [after, upto, *args]


def newest_between(
    conn: sqlite3.Connection, after: int, upto: int, limit: int, selection: EventSelection
) -> list[RawEvent]:
    """The newest ``limit`` events ``selection`` matches in (``after``, ``upto``], oldest
    first: the live stream reads only what a page is sent, not every row of a flood."""
    where, args = _between(after, upto, selection)
    rows = conn.execute(
        f"SELECT id, event, agent, body FROM audit_events WHERE {where} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [RawEvent(*row) for row in reversed(rows)]


def span(
    conn: sqlite3.Connection, after: int, upto: int, selection: EventSelection
) -> tuple[int, int | None, int | None]:
    """How many events ``selection`` matches in (``after``, ``upto``], the first id, the last."""
    where, args = _between(after, upto, selection)
    row = conn.execute(
        f"SELECT COUNT(*), MIN(id), MAX(id) FROM audit_events WHERE {where}", args
    ).fetchone()
    return int(row[0]), row[1], row[2]


def counts_between(
    conn: sqlite3.Connection, after: int, upto: int, selection: EventSelection
) -> tuple[dict[str, int], int]:
    """How many events of each name ``selection`` matches in (``after``, ``upto``], and
    the newest such id (0 if none): counted by SQLite, not row by row in Python."""
    where, args = _between(after, upto, selection)
    rows = conn.execute(
        f"SELECT event, COUNT(*), MAX(id) FROM audit_events WHERE {where} GROUP BY event", args
    ).fetchall()
    return {str(event): int(count) for event, count, _ in rows}, max(
        (int(last) for _, _, last in rows), default=0
    )


def raw_last(
    conn: sqlite3.Connection, count: int, selection: EventSelection, before: int | None = None
) -> list[RawEvent]:
    """The newest ``count`` events ``selection`` matches (up to id ``before``), oldest first."""
    where, args = selection.where()
    if before is not None:
        where = " AND ".join(p for p in (where, "id <= ?") if p)
        args.append(before)
    sql = "SELECT id, event, agent, body FROM audit_events" + (f" WHERE {where}" if where else "")
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, count)).fetchall()
    return [RawEvent(*row) for row in reversed(rows)]


def selected_after(
    conn: sqlite3.Connection, after: int, limit: int, selection: EventSelection
) -> list[RawEvent]:
    """Events ``selection`` matches after id ``after`` (a stream resuming), oldest first."""
    where, args = selection.where()
    sql = "SELECT id, event, agent, body FROM audit_events WHERE id > ?"
    sql += f" AND {where}" if where else ""
    rows = conn.execute(sql + " ORDER BY id LIMIT ?", (after, *args, limit)).fetchall()
    return [RawEvent(*row) for row in rows]


def last_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM audit_events").fetchone()
    return int(row[0])


def counted(
    conn: sqlite3.Connection,
    names: Sequence[str],
    upto: int,
    *,
    after: int | None = None,
    since: float | None = None,
) -> list[tuple[str, str, int, int]]:
    """(agent, event, minute, count) of the events named ``names`` up to id ``upto``: those
    after id ``after`` (the key), or since time ``since`` (``audit_by_ts``). SQLite
    counts, so an Overview's catch-up costs per agent and minute, not per event.
    The minute is ``floor(ts) // 60``, in integers: the same bucket as ``ts // 60``."""
    marks = ", ".join("?" * len(names))
    if since is not None:
        where, args = "ts >= ? AND id <= ?", [since, upto]
    else:
        where, args = "id > ? AND id <= ?", [after or 0, upto]
    rows = conn.execute(
        f"SELECT agent, event, CAST(ts AS INTEGER) / 60 AS minute, COUNT(*) FROM audit_events "
        f"WHERE {where} AND event IN ({marks}) AND agent IS NOT NULL GROUP BY agent, event, minute",
        (*args, *names),
    ).fetchall()
    return [(str(agent), str(event), int(minute), int(n)) for agent, event, minute, n in rows]


def newest_of_each_agent(
    conn: sqlite3.Connection, event: str, after: int = 0, upto: int | None = None
) -> dict[str, int]:
    """Each agent's newest ``event`` (e.g. its last API call) with an id in (``after``,
    ``upto``], by event id."""
    rows = conn.execute(
        "SELECT agent, MAX(id) FROM audit_events WHERE event = ? AND id > ? AND id <= ? "
        "AND agent IS NOT NULL GROUP BY agent",
        (event, after, upto if upto is not None else 2**63 - 1),
    )
    return {str(agent): int(last) for agent, last in rows}


def bodies(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, str]:
    """The stored bodies of the events ``ids``."""
    marks = ", ".join("?" * len(ids))
    if not ids:
        return {}
    rows = conn.execute(f"SELECT id, body FROM audit_events WHERE id IN ({marks})", tuple(ids))
    return {int(i): str(body) for i, body in rows}


def newest_checkpoint(conn: sqlite3.Connection) -> tuple[int, str, float, str] | None:
    """(event id, event hash, signed at, key id) of the newest signed checkpoint."""
    row = conn.execute(
        "SELECT event_id, event_hash, ts, kid FROM audit_checkpoints "
        "WHERE kind = 'checkpoint' ORDER BY event_id DESC, id DESC LIMIT 1"
    ).fetchone()
    return (int(row[0]), str(row[1]), float(row[2]), str(row[3])) if row else None


def live_credentials(conn: sqlite3.Connection) -> list[CredentialRow]:
    """Every live credential, oldest first — read without the store's lock, so a
    dashboard listing them never holds up issuance."""
    cursor = conn.execute(
        f"SELECT {CRED_COLUMNS} FROM credentials WHERE status = 'live' ORDER BY issued_at"
    )
    names = [column[0] for column in cursor.description]
    rows = []
    for row in cursor:
        values = dict(zip(names, row, strict=True))
        values["scopes"] = tuple(values["scopes"].split())
        values["audience"] = tuple(values["audience"].split())
        rows.append(CredentialRow(**values))
    return rows
