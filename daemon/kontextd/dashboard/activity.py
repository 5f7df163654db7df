"""The Overview's last hour per agent, each event counted once, shared by every dashboard.

Counting an hour of audit events on every Overview reload would cost each open
dashboard a scan of the busiest hour. ``Activity`` counts the last hour once (by
time, ``audit_by_ts``), then on each later request only what was appended since
(by id), into per-agent, per-minute buckets that every dashboard reads; the
newest API call of each agent is kept the same way. SQLite does the counting (a
``GROUP BY`` agent, event and minute): Python sees a row per agent and minute,
not one per event of a flood. Nothing runs while no dashboard
asks; after an hour without a request it starts over.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

from kontextd.store import dashboard_sql

MINUTE = 60
WINDOW = 60  # minutes shown
SERIES = ("issued", "calls", "denied")
COUNTED = {
    "credential.issued": 0,
    "api.call": 1,
    "credential.denied": 2,
    "api.denied": 2,
}
CALL = "api.call"


class Activity:
    """Per-agent counts per minute, and each agent's newest API call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: int | None = None  # the newest event id counted
        self._updated = 0.0
        self._minutes: dict[str, dict[int, list[int]]] = {}  # agent -> minute -> counts
        self._last_call: dict[str, int] = {}  # agent -> event id

    def snapshot(
        self, conn: sqlite3.Connection, now: float | None = None
    ) -> tuple[dict[str, dict[str, list[int]]], dict[str, dict[str, Any]]]:
        """(agent -> series -> 60 per-minute counts, agent -> its last API call)."""
        now = time.time() if now is None else now
        with self._lock:
            conn.execute("BEGIN")  # the newest id and the rows up to it agree
            try:
                self._catch_up(conn, now)
                calls = dashboard_sql.bodies(conn, list(self._last_call.values()))
            finally:
                conn.execute("COMMIT")
            current = int(now // MINUTE)
            self._forget_before(current - WINDOW + 1)
            series = {
                agent: self._series(minutes, current) for agent, minutes in self._minutes.items()
            }
            last = {agent: _call(calls[i]) for agent, i in self._last_call.items() if i in calls}
        return series, last

    def _catch_up(self, conn: sqlite3.Connection, now: float) -> None:
        newest = dashboard_sql.last_id(conn)
        names = list(COUNTED)
        if self._cursor is None or now - self._updated > WINDOW * MINUTE:
            self._minutes.clear()
            self._last_call = {}
            counts = dashboard_sql.counted(conn, names, newest, since=now - WINDOW * MINUTE)
            calls = dashboard_sql.newest_of_each_agent(conn, CALL, upto=newest)
        else:
            counts = dashboard_sql.counted(conn, names, newest, after=self._cursor)
            calls = dashboard_sql.newest_of_each_agent(conn, CALL, self._cursor, newest)
        for agent, event, minute, count in counts:
            slot = self._minutes.setdefault(agent, {}).setdefault(minute, [0, 0, 0])
            slot[COUNTED[event]] += count
        for agent, event_id in calls.items():
            self._last_call[agent] = max(event_id, self._last_call.get(agent, 0))
        self._cursor, self._updated = newest, now

    def _forget_before(self, first: int) -> None:
        for agent in list(self._minutes):
            minutes = self._minutes[agent]
            for minute in [m for m in minutes if m < first]:
                del minutes[minute]

    @staticmethod
    def _series(minutes: dict[int, list[int]], current: int) -> dict[str, list[int]]:
        first = current - WINDOW + 1
        out = {name: [0] * WINDOW for name in SERIES}
        for minute, counts in minutes.items():
            if first <= minute <= current:
                for index, name in enumerate(SERIES):
                    out[name][minute - first] = counts[index]
        return out


def _call(body: str) -> dict[str, Any]:
    event = json.loads(body)
    keep = ("ts", "method", "path", "status", "integration", "scope", "target")
    return {k: event.get(k) for k in keep}
