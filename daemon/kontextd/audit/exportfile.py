"""The export file: what ``kontext audit export`` writes and ``audit verify --file`` reads.

JSON lines, in this order:

- ``{"kontext_record": "anchor", "kids": [...], "checkpoint": {...}, "where": ...}``:
  the trust anchor pinned where the log lives, as it stood at export time;
- ``{"kontext_record": "key", "kid": ..., "jwk": {...}}``: each pinned public key;
- ``{"kontext_record": "checkpoint", ...}``: the checkpoints over exported events;
- the events, each exactly as stored plus its ``hash``.

The events run from ``--since`` to ``--until`` and then on to the first signed
checkpoint at or after the last of them, so that every exported event is
covered by a signature the file itself carries: the file verifies on its own,
and an event added to it, edited or re-chained fails. Which keys to trust is
the reader's call (``--key KID``); the file names them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from kontext.common import parsing
from kontextd.audit import chain
from kontextd.audit.evidence import Trusted
from kontextd.audit.verify import pinned_row
from kontextd.store import audit_sql
from kontextd.store.audit_sql import CheckpointRow, EventRow
from kontextd.tokens.keys import thumbprint

RECORD = "kontext_record"  # marks the non-event lines
KEY, CHECKPOINT, ANCHOR = "key", "checkpoint", "anchor"


class ExportInvalid(ValueError):
    """A line of the file is not what ``audit export`` writes (``path:line: what``)."""


@dataclass
class Parsed:
    """An export file, read."""

    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[CheckpointRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    anchor: dict[str, Any] | None = None

    def pinned_within(self) -> CheckpointRow | None:
        """The anchor's pinned checkpoint if it names an event in the file."""
        pin = (self.anchor or {}).get("checkpoint")
        if not isinstance(pin, dict) or not self.events:
            return None
        event_id, event_hash = pin.get("event_id"), pin.get("event_hash")
        if not isinstance(event_id, int) or not isinstance(event_hash, str):
            return None
        if not self.events[0].id <= event_id <= self.events[-1].id:
            return None
        return pinned_row(event_id, event_hash)


def write(
    conn: sqlite3.Connection,
    out: IO[str],
    trusted: Trusted,
    start: float | None,
    end: float | None,
) -> str | None:
    """Write the export (inside the caller's read transaction); a warning, or None."""
    after = audit_sql.first_id_since(conn, start) if start is not None else 0
    last = audit_sql.last_id_before(conn, end)
    through = None if last is None else audit_sql.covering_checkpoint(conn, last)

    def put(value: dict[str, Any]) -> None:
        out.write(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        out.write("\n")

    pin = trusted.anchor.checkpoint
    put(
        {RECORD: ANCHOR, "kids": sorted(trusted.keys), "where": trusted.where}
        | {"checkpoint": asdict(pin) if pin else None}
    )
    for kid, jwk in sorted(trusted.keys.items()):
        put({RECORD: KEY, "kid": kid, "jwk": jwk})
    stop = through if through is not None else last
    for cp in audit_sql.checkpoints(conn, since_event=after + 1):
        if stop is not None and cp.event_id <= stop:
            put({RECORD: CHECKPOINT, **asdict(cp)})
    if last is None or last <= after:
        return None
    for row in audit_sql.iter_events(conn, after=after, through=stop):
        put({**json.loads(row.body), "hash": row.hash})
    if through is None:
        return (
            f"events after the last checkpoint (to event {last}) are not signed yet: start "
            "the daemon (it signs them) and export again, or 'audit verify --file' will refuse"
        )
    return None


def read(path: str) -> Parsed:
    """Parse an export; raises ``ExportInvalid`` or ``OSError``."""
    parsed = Parsed()
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    _take(parsed, parsing.json_loads(line))  # depth-limited (TooDeep)
                except (ValueError, TypeError, KeyError) as exc:
                    raise ExportInvalid(f"{path}:{number}: {_why(exc)}") from None
    return parsed


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ExportInvalid) else "not a line 'audit export' writes"


def _take(parsed: Parsed, record: Any) -> None:
    if not isinstance(record, dict):
        raise ExportInvalid("not a JSON object")
    kind = record.pop(RECORD, None)
    if kind == ANCHOR:
        parsed.anchor = record
    elif kind == KEY:
        parsed.keys[str(record["kid"])] = dict(record["jwk"])
    elif kind == CHECKPOINT:
        parsed.checkpoints.append(CheckpointRow(**record))
    elif kind is None:
        stored_hash = str(record.pop("hash", ""))
        row_id = record.get("id")
        if not isinstance(row_id, int):
            raise ExportInvalid("an event line without an id")
        body = chain.canonical(record).decode()
        parsed.events.append(EventRow(row_id, body, str(record.get("prev_hash")), stored_hash))
    else:
        raise ExportInvalid(f"unknown record {str(kind)[:40]!r}")


def trusted_keys(
    parsed: Parsed, wanted: list[str] | None
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The keys to check signatures with: the anchor's (``--key`` narrows them)."""
    notes: list[str] = []
    kids = parsed.anchor.get("kids") if parsed.anchor else None
    if not isinstance(kids, list):
        notes.append("the file carries no pinned anchor (an older export): its keys are trusted")
        kids = list(parsed.keys)
    keys = {k: parsed.keys[k] for k in kids if isinstance(k, str) and k in parsed.keys}
    if wanted:
        keys = {k: v for k, v in keys.items() if k in wanted}
    for kid, jwk in sorted(keys.items()):
        if not _named_by_thumbprint(kid, jwk):
            notes.append(f"key {kid[:64]} is not named by its RFC 7638 thumbprint")
    return keys, notes


def _named_by_thumbprint(kid: str, jwk: dict[str, Any]) -> bool:
    try:
        return thumbprint(jwk) == kid
    except (KeyError, TypeError):
        return False
