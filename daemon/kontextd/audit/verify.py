"""Walking the audit chain and its checkpoints; the first broken link wins.

Pure functions over rows, so the same walk checks the live database (opened
read-only by ``kontext audit verify``) and an exported JSONL file. Checks, in
event order:

- each body hashes (SHA-256) to its stored hash, and names its own id;
- each body's ``prev_hash`` is the previous row's hash (and the column agrees);
- ids are contiguous (a gap is a deleted row);
- the first event is event 1 chained from the genesis hash, or is preceded by a
  signed anchor (left by pruning) naming the event before it and its hash;
- every checkpoint's ES256 signature verifies with the public key of its
  recorded ``kid``, its claims match its columns, and the event it names
  exists with exactly that hash (a checkpoint past the end means rows were cut
  from the end).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kontextd.audit import chain
from kontextd.audit.checkpoint import BadSignature
from kontextd.audit.checkpoint import verify as verify_signature
from kontextd.store.audit_sql import CheckpointRow, EventRow


class Broken(Exception):
    """The first broken link: which event, and what is wrong there."""

    def __init__(self, event_id: int, message: str) -> None:
        super().__init__(f"event {event_id}: {message}")
        self.event_id = event_id
        self.message = message


@dataclass
class Report:
    """What a clean walk covered."""

    events: int = 0
    checkpoints: int = 0
    first_id: int | None = None
    last_id: int | None = None
    unanchored: bool = False


def check_checkpoint(cp: CheckpointRow, keys: dict[str, dict[str, Any]]) -> None:
    """Signature and claims of one checkpoint (not yet the row it names)."""
    try:
        claims = verify_signature(cp.jws, cp.kid, keys.get(cp.kid))
    except BadSignature as exc:
        raise Broken(cp.event_id, f"{cp.kind} {cp.id} is forged: {exc}") from exc
    if (claims.get("event_id"), claims.get("event_hash"), claims.get("kind")) != (
        cp.event_id,
        cp.event_hash,
        cp.kind,
    ):
        raise Broken(cp.event_id, f"{cp.kind} {cp.id} was altered after signing")


def _start(first: EventRow, anchors: dict[int, CheckpointRow], trust_start: bool) -> bool:
    """Check where the chain begins; True if it begins unanchored (trusted export start)."""
    if first.id == 1 and first.prev_hash == chain.GENESIS:
        return False
    anchor = anchors.get(first.id - 1)
    if anchor is not None and anchor.event_hash == first.prev_hash:
        return False
    if trust_start:
        return True
    raise Broken(first.id, "events before it are missing and no signed anchor covers them")


def _check_row(row: EventRow, prev: EventRow | None) -> None:
    if prev is not None and row.id != prev.id + 1:
        missing = prev.id + 1
        raise Broken(missing, f"is missing (deleted?): event {prev.id} is followed by {row.id}")
    if hashlib.sha256(row.body.encode()).hexdigest() != row.hash:
        raise Broken(row.id, "its content was edited: the body does not match its hash")
    try:
        body = json.loads(row.body)
    except ValueError as exc:
        raise Broken(row.id, "its body is not JSON") from exc
    if not isinstance(body, dict) or body.get("id") != row.id:
        raise Broken(row.id, "was moved: its body belongs to another position (reordered?)")
    if body.get("prev_hash") != row.prev_hash:
        raise Broken(row.id, "its prev_hash column differs from its body")
    if prev is not None and row.prev_hash != prev.hash:
        raise Broken(row.id, f"does not chain to event {prev.id} (edited, or rows reordered)")


def walk(
    events: Iterable[EventRow],
    checkpoints: list[CheckpointRow],
    keys: dict[str, dict[str, Any]],
    *,
    trust_start: bool = False,
) -> Report:
    """Verify everything; raise ``Broken`` at the first bad link, else return a report."""
    for cp in checkpoints:
        check_checkpoint(cp, keys)
    anchors = {cp.event_id: cp for cp in checkpoints if cp.kind == "anchor"}
    pending: dict[int, list[CheckpointRow]] = {}
    for cp in checkpoints:
        pending.setdefault(cp.event_id, []).append(cp)
    report, prev = Report(), None
    for row in events:
        if prev is None:
            report.unanchored = _start(row, anchors, trust_start)
            report.first_id = row.id
        _check_row(row, prev)
        for cp in pending.pop(row.id, []):
            if cp.event_hash != row.hash:
                raise Broken(row.id, f"{cp.kind} {cp.id} signed another hash: event rewritten")
            report.checkpoints += cp.kind == "checkpoint"
        report.events += 1
        prev = row
    last = prev.id if prev else 0
    report.last_id = prev.id if prev else None
    beyond = sorted(e for e in pending if e > last)
    if beyond:
        cut = f"is missing: a checkpoint names event {beyond[0]} (rows cut from the end?)"
        raise Broken(last + 1, cut)
    report.checkpoints += sum(1 for e in pending for cp in pending[e] if cp.kind == "checkpoint")
    return report
