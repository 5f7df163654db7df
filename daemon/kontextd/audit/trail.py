"""The daemon's side of the audit trail: checkpoints, pruning, tail filters.

A checkpoint is signed at every ``[audit] checkpoint_every``-th event (default
1000), once the oldest event no checkpoint covers is ``checkpoint_interval`` old
(default 5 minutes), at every daemon stop, after a prune, and on ``kontext
audit checkpoint``; each is pinned outside the database (``audit.pinning``).
The housekeeping thread checks four times a second — not inside the append,
because signing needs the key ring, whose lock may be held by the very
transaction appending (key creation audits itself).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

from kontext.common import events, validate, wire
from kontextd.audit import checkpoint, pinning
from kontextd.audit.requester import Requester
from kontextd.core import Core
from kontextd.errors import ApiError, invalid
from kontextd.store import audit_sql

log = logging.getLogger("kontextd.audit")


def _sign_last(
    core: Core,
    kind: str,
    before_ts: float | None = None,
    event_id: int | None = None,
    claims: dict[str, Any] | None = None,
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
        signed = {"event_id": event_id, "event_hash": event_hash, "kind": kind, "iat": int(now)}
        jws = checkpoint.sign(key.private, key.kid, {**(claims or {}), **signed})
        row = audit_sql.CheckpointRow(0, event_id, event_hash, now, kind, key.kid, jws)
        row = replace(row, id=audit_sql.insert_checkpoint(conn, row))
    pinning.pin_signed(core, key, row)
    return {
        "id": row.id,
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


# When this daemon first saw the current unsigned stretch, on the monotonic clock
# (by id of its Core): a wall clock set back must not postpone the next signature.
_unsigned_since: dict[int, float] = {}


def maybe_checkpoint(core: Core, most: int = 100) -> int:
    """Sign at every ``checkpoint_every``-th event since the last checkpoint, and over
    the newest once unsigned events are ``checkpoint_interval`` old (by their time,
    or by how long this daemon has seen them unsigned)."""
    settings = core.config.audit
    with core.store.connection() as conn:
        newest = audit_sql.last_event(conn)
        done = audit_sql.last_checkpointed(conn)
        oldest = audit_sql.first_uncovered_ts(conn, done)
    signed = 0
    while newest is not None and newest[0] - done >= settings.checkpoint_every and signed < most:
        done += settings.checkpoint_every
        signed += _sign_last(core, "checkpoint", event_id=done) is not None
    if oldest is None or newest is None or newest[0] <= done:
        _unsigned_since.pop(id(core), None)
        return signed
    seen = _unsigned_since.setdefault(id(core), time.monotonic())
    interval = settings.checkpoint_interval
    if time.time() - oldest >= interval or time.monotonic() - seen >= interval:
        signed += _sign_last(core, "checkpoint") is not None
        _unsigned_since.pop(id(core), None)
    return signed


def checkpoint_at_stop(core: Core) -> None:
    """The daemon is stopping: sign its last events, so nothing is left uncovered."""
    try:
        _sign_last(core, "checkpoint")
    except Exception:  # a stop must finish; verify will name the uncovered events
        log.exception("could not sign a checkpoint at stop")


def prune(core: Core, before: Any, requester: Requester) -> dict[str, Any]:
    """Delete events older than ``before`` (Unix seconds), leaving a signed anchor that
    records the range and who asked; then sign a checkpoint over ``audit.pruned``.

    Refused from inside an agent and for events younger than ``[audit]
    prune_min_age``. The newest event always stays, so ids never restart.
    """
    if not isinstance(before, int | float) or isinstance(before, bool) or not math.isfinite(before):
        raise invalid("before must be a time in Unix seconds")
    if requester.agent is not None:
        raise ApiError(
            wire.FORBIDDEN,
            f"pruning the audit log is refused inside an agent ({requester.agent}, pid "
            f"{requester.pid}): run 'kontext audit prune' from your own shell",
        )
    _old_enough(core, before)
    core.secrets_check()
    with core.store.connection() as conn:
        newest = audit_sql.last_event(conn)
        through = audit_sql.last_event(conn, before)
        first = audit_sql.first_event_id(conn)
    if through is None or newest is None:
        return {"pruned": 0, "anchor": None}
    if through[0] >= newest[0]:
        raise invalid("that would remove every event; the newest one must stay to carry the chain")
    who = requester.to_json()
    claims = {"pruned": {"first": first, "through": through[0]}, "requested_by": who}
    anchor = _sign_last(core, "anchor", event_id=through[0], claims=claims)
    assert anchor is not None
    with core.store.transaction() as tx, core.store.connection() as conn:
        deleted = audit_sql.prune_through(conn, anchor["event_id"])
        tx.append_event(
            {
                "event": "audit.pruned",
                "first": first,
                "through": anchor["event_id"],
                "deleted": deleted,
                "before": before,
                "anchor_kid": anchor["kid"],
                "requested_by": who,
                "user": core.user_ref(),
            }
        )
    _sign_last(core, "checkpoint")
    return {"pruned": deleted, "anchor": anchor}


def _old_enough(core: Core, before: float) -> None:
    """Refuse a cut-off inside ``[audit] prune_min_age`` (default 30 days)."""
    min_age = core.config.audit.prune_min_age
    latest = time.time() - min_age
    if before > latest:
        day = time.strftime("%Y-%m-%d %H:%M", time.localtime(latest))
        raise invalid(
            f"events younger than {validate.format_duration(min_age)} are kept "
            f"([audit] prune_min_age): use --before {day} or earlier"
        )


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
