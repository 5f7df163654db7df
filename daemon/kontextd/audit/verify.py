"""Walking the audit chain and its checkpoints; the first broken link wins.

Pure functions over rows, so the same walk checks the live database (opened
read-only by ``kontext audit verify``) and an exported JSONL file. Checks, in
event order:

- each body hashes (SHA-256) to its stored hash, and names its own id;
- each body's ``prev_hash`` is the previous row's hash (and the column agrees);
- ids are contiguous (a gap is a deleted row);
- the first event is event 1 chained from the genesis hash, or is preceded by a
  signed anchor (left by pruning) naming the event before it and its hash;
- every checkpoint's ES256 signature verifies with a *trusted* public key
  (pinned outside the database, ``audit.anchor``; a key found only in
  ``signing_keys`` is not trusted), its claims match its columns, and the event
  it names exists with exactly that hash (a checkpoint past the end means rows
  were cut from the end);
- the pinned checkpoint's event is there with the pinned hash (a rewritten
  chain, a cut end or a replaced database without the private key fails here).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kontext.common import parsing
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
    covered: int = 0  # the newest event a verified checkpoint (or the pin) signs


PINNED = "pinned"  # the kind given to the pinned checkpoint in ``walk``


def pinned_row(event_id: int, event_hash: str, cp_id: int = 0) -> CheckpointRow:
    """The pinned checkpoint as a row ``walk`` checks like the others (already trusted)."""
    return CheckpointRow(cp_id, event_id, event_hash, 0.0, PINNED, "", "")


def check_checkpoint(cp: CheckpointRow, keys: dict[str, dict[str, Any]]) -> None:
    """Signature and claims of one checkpoint (not yet the row it names)."""
    if cp.kid not in keys:
        raise Broken(
            cp.event_id,
            f"{cp.kind} {cp.id} is signed by key {cp.kid[:64]}, which is not a pinned key "
            "(added to the database, or the database replaced?)",
        )
    try:
        claims = verify_signature(cp.jws, cp.kid, keys[cp.kid])
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
        body = parsing.json_loads(row.body)
    except ValueError as exc:  # not JSON, or nested absurdly deep (parsing.TooDeep)
        raise Broken(row.id, "its body is not JSON") from exc
    if not isinstance(body, dict) or body.get("id") != row.id:
        raise Broken(row.id, "was moved: its body belongs to another position (reordered?)")
    if body.get("prev_hash") != row.prev_hash:
        raise Broken(row.id, "its prev_hash column differs from its body")
    if prev is not None and row.prev_hash != prev.hash:
        raise Broken(row.id, f"does not chain to event {prev.id} (edited, or rows reordered)")


_sha256 = hashlib.sha256
# The scanner json.loads's own decoder runs (typeshed does not declare the attribute).
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _intact(row: tuple[int, str, str, str], prev_hash: str) -> bool:
    """``_check_row``'s body checks, the quick way; False means "let _check_row look".

    ``scan_once`` is the C scanner behind ``json.loads`` without its Python
    wrappers: a body it reads to its very end parses to the object ``loads``
    returns. Anything that does not pass here is judged by ``_check_row``.
    """
    row_id, body, column_prev, stored = row
    if _sha256(body.encode()).hexdigest() != stored or column_prev != prev_hash:
        return False
    try:
        parsed, end = _scan(body, 0)
    except (StopIteration, ValueError, RecursionError):  # _check_row says what is wrong
        return False
    return (
        end == len(body)
        and type(parsed) is dict
        and parsed.get("id") == row_id
        and parsed.get("prev_hash") == column_prev
    )


def walk(
    events: Iterable[tuple[int, str, str, str]],
    checkpoints: list[CheckpointRow],
    keys: dict[str, dict[str, Any]],
    *,
    trust_start: bool = False,
    pinned: CheckpointRow | None = None,
) -> Report:
    """Verify everything; raise ``Broken`` at the first bad link, else return a report.

    ``events`` are ``EventRow``s or sqlite's plain row tuples in the same order;
    ``keys`` are the trusted public keys by kid; ``pinned`` (``pinned_row``) is
    the checkpoint pinned outside the database, whose event must be reached.
    """
    for cp in checkpoints:
        check_checkpoint(cp, keys)
    anchors = {cp.event_id: cp for cp in checkpoints if cp.kind == "anchor"}
    pending: dict[int, list[CheckpointRow]] = {}
    for cp in [*checkpoints, *([pinned] if pinned is not None else [])]:
        pending.setdefault(cp.event_id, []).append(cp)
    report, rows = Report(), iter(events)
    first = next(rows, None)
    if first is None:
        return _finish(report, None, pending)
    prev = EventRow._make(first)
    report.unanchored = _start(prev, anchors, trust_start)
    for before in [e for e in pending if e < prev.id]:  # pruned away behind the anchor
        report.covered = max(report.covered, before)
        report.checkpoints += sum(cp.kind == "checkpoint" for cp in pending.pop(before))
    report.first_id = prev.id
    _check_row(prev, None)
    _reached(prev.id, prev.hash, pending.pop(prev.id, None), report)
    last_id, last_hash, count = prev.id, prev.hash, 1
    for row in rows:
        # The common case costs one hash, one C-level parse and a few compares;
        # anything odd goes to _check_row, which names exactly what is wrong.
        if row[0] != last_id + 1 or not _intact(row, last_hash):
            _check_row(EventRow._make(row), EventRow(last_id, "", "", last_hash))
        last_id, last_hash, count = row[0], row[3], count + 1
        if last_id in pending:
            _reached(last_id, last_hash, pending.pop(last_id), report)
    report.events = count
    return _finish(report, last_id, pending)


def _reached(
    event_id: int, event_hash: str, cps: list[CheckpointRow] | None, report: Report
) -> None:
    """The walk got to ``event_id``: the checkpoints naming it must have signed its hash."""
    for cp in cps or ():
        if cp.event_hash != event_hash and cp.kind == PINNED:
            raise Broken(
                event_id, "differs from the pinned checkpoint: the log was rewritten or replaced"
            )
        if cp.event_hash != event_hash:
            raise Broken(event_id, f"{cp.kind} {cp.id} signed another hash: event rewritten")
        report.checkpoints += cp.kind == "checkpoint"
        if cp.kind != "anchor":
            report.covered = max(report.covered, event_id)


def _finish(report: Report, last_id: int | None, pending: dict[int, list[CheckpointRow]]) -> Report:
    """Checkpoints past the last event mean rows were cut from the end."""
    last = last_id or 0
    report.last_id = last_id
    beyond = sorted(e for e in pending if e > last)
    if any(cp.kind == PINNED for e in beyond for cp in pending[e]):
        pin = next(cp for e in beyond for cp in pending[e] if cp.kind == PINNED)
        cut = (
            f"is missing: the pinned checkpoint names event {pin.event_id} "
            "(rows cut from the end, or the database replaced?)"
        )
        raise Broken(last + 1, cut)
    if beyond:
        cut = f"is missing: a checkpoint names event {beyond[0]} (rows cut from the end?)"
        raise Broken(last + 1, cut)
    report.checkpoints += sum(1 for e in pending for cp in pending[e] if cp.kind == "checkpoint")
    return report
