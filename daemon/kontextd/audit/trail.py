"""The daemon's side of the audit trail: checkpoints, pruning, tail filters.

Checkpoints are signed at every ``[audit] checkpoint_every``-th event (default
1000) by the daemon's housekeeping thread, checked four times a second — not
inside the append, because signing needs the key ring, whose lock may be held by
the very transaction appending (key creation audits itself) — and on
``kontext audit checkpoint``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from kontext.common import events, validate
from kontextd.audit import checkpoint
from kontextd.core import Core
from kontextd.errors import invalid
from kontextd.store import audit_sql

log = logging.getLogger("kontextd.audit")
DEFAULT_EVERY = 1000


def checkpoint_every(core: Core) -> int:
    """``[audit] checkpoint_every`` from config.toml, 1..1,000,000; default 1000."""
    section = core.config.raw.get("audit", {})
    value = section.get("checkpoint_every", DEFAULT_EVERY) if isinstance(section, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1_000_000:
        return value
    log.warning("config: audit.checkpoint_every must be 1..1000000; using %s", DEFAULT_EVERY)
    return DEFAULT_EVERY


def _sign_last(
    core: Core, kind: str, before_ts: float | None = None, event_id: int | None = None
) -> dict[str, Any] | None:
    """Sign (id, hash) of event ``event_id``, else the newest (older than ``before_ts``)."""
    key = core.keys.active()  # outside the store lock: the key ring may need the store
    with core.store.transaction(), core.store.connection() as conn:
        if event_id is not None:
            found = audit_sql.event_at(conn, event_id)
        else:
            found = audit_sql.last_event(conn, before_ts)
        if found is None:
            return None
        event_id, event_hash = found
        now = time.time()
        claims = {"event_id": event_id, "event_hash": event_hash, "kind": kind, "iat": int(now)}
        jws = checkpoint.sign(key.private, key.kid, claims)
        row = audit_sql.CheckpointRow(0, event_id, event_hash, now, kind, key.kid, jws)
        cp_id = audit_sql.insert_checkpoint(conn, row)
    return {
        "id": cp_id,
        "event_id": event_id,
        "event_hash": event_hash,
        "kid": key.kid,
        "kind": kind,
    }


def make_checkpoint(core: Core) -> dict[str, Any]:
    """``kontext audit checkpoint``: sign the newest event now."""
    core.secrets_check()
    result = _sign_last(core, "checkpoint")
    if result is None:
        raise invalid("the audit log is empty: nothing to checkpoint")
    return result


def maybe_checkpoint(core: Core, most: int = 100) -> int:
    """Sign a checkpoint at every ``checkpoint_every``-th event since the last one."""
    every = checkpoint_every(core)
    with core.store.connection() as conn:
        newest = audit_sql.last_event(conn)
        done = audit_sql.last_checkpointed(conn)
    signed = 0
    while newest is not None and newest[0] - done >= every and signed < most:
        done += every
        signed += _sign_last(core, "checkpoint", event_id=done) is not None
    return signed


def prune(core: Core, before: Any) -> dict[str, Any]:
    """Delete events older than ``before`` (Unix seconds), leaving a signed anchor.

    The newest event always stays, so ids never restart and the chain goes on.
    """
    if not isinstance(before, int | float) or isinstance(before, bool) or not math.isfinite(before):
        raise invalid("before must be a time in Unix seconds")
    core.secrets_check()
    with core.store.connection() as conn:
        newest = audit_sql.last_event(conn)
        through = audit_sql.last_event(conn, before)
    if through is None or newest is None:
        return {"pruned": 0, "anchor": None}
    if through[0] >= newest[0]:
        raise invalid("that would remove every event; the newest one must stay to carry the chain")
    anchor = _sign_last(core, "anchor", before_ts=before)
    assert anchor is not None
    with core.store.transaction() as tx, core.store.connection() as conn:
        deleted = audit_sql.prune_through(conn, anchor["event_id"])
        tx.append_event(
            {
                "event": "audit.pruned",
                "through": anchor["event_id"],
                "deleted": deleted,
                "before": before,
                "anchor_kid": anchor["kid"],
            }
        )
    return {"pruned": deleted, "anchor": anchor}


def query_filter(query: dict[str, str]) -> audit_sql.AuditFilter:
    """Validate ``agent``, ``user``, ``event``, ``since``, ``until`` query parameters."""
    agent = query.get("agent")
    user = query.get("user")
    event = query.get("event")
    if event is not None:
        try:
            events.check(event)
        except validate.InvalidInput as exc:
            raise invalid(str(exc)) from exc
    if user is not None and not 0 < len(user) <= 256:
        raise invalid("user must be 1-256 characters")
    try:
        return audit_sql.AuditFilter(
            agent=f"agent:{validate.agent_name(agent)}" if agent else None,
            user=None if user is None else (user if user.startswith("user:") else f"user:{user}"),
            event=event,
            since=_time(query.get("since"), "since"),
            until=_time(query.get("until"), "until"),
        )
    except validate.InvalidInput as exc:
        raise invalid(str(exc)) from exc


def _time(raw: str | None, name: str) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise invalid(f"{name} must be a time in Unix seconds")
    return value
