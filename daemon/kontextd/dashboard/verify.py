"""``audit verify``'s answer for the top of the Activity page.

The same walk ``kontext audit verify`` runs (``kontextd.audit.verify``), over the
database opened read-only on a connection of its own, inside one read snapshot,
on an executor thread: the daemon never holds its store lock while a long log is
checked. Concurrent requests share one run (``Verifier``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kontextd.audit import verify as walker
from kontextd.store import audit_sql, dashboard_sql


def verify_log(database: str) -> dict[str, Any]:
    """``intact`` with what was covered, or ``broken`` with the first bad link."""
    began = time.monotonic()
    conn = audit_sql.open_readonly(database)
    try:
        conn.execute("BEGIN")  # one snapshot: the daemon may append meanwhile
        checkpoint = dashboard_sql.newest_checkpoint(conn)
        try:
            report = walker.walk(
                audit_sql.event_rows(conn), audit_sql.checkpoints(conn), audit_sql.public_keys(conn)
            )
        except walker.Broken as exc:
            result: dict[str, Any] = {
                "intact": False,
                "event_id": exc.event_id,
                "message": f"audit log broken at event {exc.event_id}: {exc.message}",
            }
        else:
            result = {
                "intact": True,
                "events": report.events,
                "first_id": report.first_id,
                "last_id": report.last_id,
                "checkpoints": report.checkpoints,
                "message": f"verified {report.events} events and "
                f"{report.checkpoints} checkpoints: intact",
            }
    finally:
        conn.close()
    result["checkpoint"] = (
        None
        if checkpoint is None
        else {"event_id": checkpoint[0], "signed_at": checkpoint[2], "kid": checkpoint[3]}
    )
    result["checked_at"] = time.time()
    result["seconds"] = round(time.monotonic() - began, 3)
    return result


class Verifier:
    """One verification at a time on the loop's executor; callers meanwhile share it."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._running: asyncio.Future[dict[str, Any]] | None = None

    async def result(self) -> dict[str, Any]:
        if self._running is None or self._running.done():
            loop = asyncio.get_running_loop()
            self._running = loop.run_in_executor(None, verify_log, self._database)
        return await asyncio.shield(self._running)
