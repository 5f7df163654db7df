"""The daemon's side of the trust anchor (``audit.anchor``): pin at start, pin as it signs.

At start the signing key is pinned (its public JWK derived from the private key
in memory). A log older than anchors — an upgrade: checkpoints in the database,
no anchor anywhere — is trusted once, as it stands (its keys and its newest
checkpoint that verifies), and that is audited as ``audit.anchor_pinned`` with
``first_use``. A pinned checkpoint whose event is gone or changed freezes the pin
and says so: the next checkpoint must not paper over a cut or replaced log.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from kontextd.audit import checkpoint
from kontextd.audit.anchor import Anchor, AnchorInvalid, PinnedCheckpoint
from kontextd.core import Core
from kontextd.store import audit_sql
from kontextd.tokens.keys import public_jwk

log = logging.getLogger("kontextd.audit")


def start(core: Core) -> str | None:
    """Load or make the anchor and pin the signing key; a notice when the log lost its pin."""
    anchors = core.anchors
    assert anchors is not None
    key = core.keys.active()
    try:
        found = anchors.load()
    except AnchorInvalid as exc:
        anchors.frozen = f"the audit trust anchor in {anchors.where} is damaged ({exc})"
        log.warning("audit anchor: %s", anchors.frozen)
        return f"{anchors.frozen}; 'kontext audit verify' fails until it is restored"
    if found is None:
        _first_anchor(core, key)
        return None
    if found.checkpoint is not None:
        problem = _lost(core, found.checkpoint)
        if problem is not None:
            anchors.frozen = problem
            log.warning("audit anchor: %s", problem)
            return f"{problem}; 'kontext audit verify' shows where"
    if anchors.pin_key(key.kid, public_jwk(key.private.public_key())):
        _audit(core, {"kids": [key.kid], "first_use": False})
    if anchors.frozen:
        log.warning("audit anchor: %s", anchors.frozen)
        return f"{anchors.frozen}; 'kontext audit verify' shows where"
    return None


def pin_signed(core: Core, key: Any, row: audit_sql.CheckpointRow) -> None:
    """After a checkpoint is committed: sync it to the disk, then pin it (and its key)."""
    anchors = core.anchors
    if anchors is None or anchors.frozen:
        return
    try:
        audit_sql.make_durable(core.store.path)
    except sqlite3.Error as exc:  # best effort: the commit itself succeeded
        log.warning("could not sync the database before pinning checkpoint %s: %s", row.id, exc)
    anchors.pin_key(key.kid, public_jwk(key.private.public_key()))
    anchors.pin_checkpoint(
        PinnedCheckpoint(row.id, row.event_id, row.event_hash, row.kid, row.kind, row.ts)
    )


def _lost(core: Core, pinned: PinnedCheckpoint) -> str | None:
    """Why the database no longer holds the pinned checkpoint's event, or None."""
    with core.store.connection() as conn:
        found = audit_sql.event_at(conn, pinned.event_id)
        first = audit_sql.first_event_id(conn)
    if found is not None:
        if found[1] == pinned.event_hash:
            return None
        return f"the audit log was rewritten: event {pinned.event_id} differs from the pinned one"
    if first is not None and first > pinned.event_id:
        return None  # pruned away behind a signed anchor (verify checks that anchor)
    return f"the audit log lost its pinned event {pinned.event_id} (truncated or replaced)"


def _first_anchor(core: Core, key: Any) -> None:
    """No anchor here yet: pin the signing key and, for a log that already has
    checkpoints (made before anchors existed), trust it as it stands, once."""
    assert core.anchors is not None
    with core.store.connection() as conn:
        known = audit_sql.public_keys(conn)
        rows = audit_sql.checkpoints(conn)
    newest = _newest_verifying(rows, known)
    keys = {cp.kid: known[cp.kid] for cp in rows if cp.kid in known}
    keys[key.kid] = public_jwk(key.private.public_key())
    anchor = Anchor(keys=keys, checkpoint=newest, first_use=time.time() if rows else None)
    core.anchors.create(anchor)
    event_id = newest.event_id if newest else None
    _audit(core, {"kids": sorted(keys), "event_id": event_id, "first_use": bool(rows)})


def _newest_verifying(
    rows: list[audit_sql.CheckpointRow], keys: dict[str, dict[str, Any]]
) -> PinnedCheckpoint | None:
    for cp in sorted(rows, key=lambda r: (r.event_id, r.id), reverse=True):
        try:
            checkpoint.verify(cp.jws, cp.kid, keys.get(cp.kid))
        except checkpoint.BadSignature:
            log.warning("audit anchor: checkpoint %s does not verify; not pinned", cp.id)
            continue
        return PinnedCheckpoint(cp.id, cp.event_id, cp.event_hash, cp.kid, cp.kind, cp.ts)
    return None


def _audit(core: Core, fields: dict[str, Any]) -> None:
    assert core.anchors is not None
    with core.store.transaction() as tx:
        tx.append_event({"event": "audit.anchor_pinned", "where": core.anchors.where, **fields})
