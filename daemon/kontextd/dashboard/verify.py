"""``kontext audit verify``'s answer for the top of the Activity page.

The same checks, through the same functions (``kontextd.audit.evidence``): the
chain walked against the trust anchor pinned outside the database, and events the
daemon should have signed by now flagged. Run on the database opened read-only on a
connection of its own, inside one read snapshot, on an executor thread — the daemon
never holds its store lock while a long log is checked. Concurrent requests share
one run (``Verifier``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kontextd.audit import evidence
from kontextd.audit import verify as walker
from kontextd.audit.anchor import AnchorInvalid
from kontextd.core import Core
from kontextd.secrets import SecretsUnavailable
from kontextd.store import audit_sql, dashboard_sql


def _check(core: Core) -> dict[str, Any]:
    conn = audit_sql.open_readonly(core.store.path)
    try:
        conn.execute("BEGIN")  # one snapshot: the daemon may append meanwhile
        newest = dashboard_sql.newest_checkpoint(conn)
        signed = (
            None
            if newest is None
            else {"event_id": newest[0], "signed_at": newest[2], "kid": newest[3]}
        )
        try:
            trusted = evidence.read_anchor(core.paths, core.config, audit_sql.key_storages(conn))
        except (AnchorInvalid, evidence.NoAnchor) as exc:
            raise walker.Broken(1, evidence.unreadable(exc)) from exc
        report = evidence.verify_database(conn, trusted)
        tail = evidence.uncovered(conn, report)
    finally:
        conn.close()
    evidence.require_signed(tail, core.config.audit.checkpoint_interval)
    pin = trusted.anchor.checkpoint
    return {
        "intact": True,
        "events": report.events,
        "first_id": report.first_id,
        "last_id": report.last_id,
        "checkpoints": report.checkpoints,
        "unsigned": None if tail is None else {"first": tail.first, "last": tail.last},
        "checkpoint": signed,
        "anchor": {
            "event_id": pin.event_id if pin else None,
            "keys": sorted(trusted.keys),
            "where": trusted.where,
        },
        "message": f"verified {report.events} events and {report.checkpoints} signed "
        "checkpoints against the pinned anchor: intact",
    }


def verify_log(core: Core) -> dict[str, Any]:
    """``intact`` with what was covered; ``intact: false`` with the first broken link;
    ``intact: null`` when the anchor cannot be read from here."""
    began = time.monotonic()
    try:
        result = _check(core)
    except walker.Broken as exc:
        result = {
            "intact": False,
            "event_id": exc.event_id,
            "message": f"audit log broken at event {exc.event_id}: {exc.message}",
        }
    except SecretsUnavailable as exc:
        result = {"intact": None, "message": evidence.unreadable(exc)}
    result["checked_at"] = time.time()
    result["seconds"] = round(time.monotonic() - began, 3)
    return result


class Verifier:
    """One verification at a time on the loop's executor; callers meanwhile share it."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._running: asyncio.Future[dict[str, Any]] | None = None

    async def result(self) -> dict[str, Any]:
        if self._running is None or self._running.done():
            loop = asyncio.get_running_loop()
            self._running = loop.run_in_executor(None, verify_log, self._core)
        return await asyncio.shield(self._running)
