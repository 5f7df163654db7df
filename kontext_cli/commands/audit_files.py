"""``kontext audit verify`` and ``kontext audit export``: reading the log as evidence.

Both read the SQLite file directly, opened read-only, instead of asking the
daemon: evidence should be checked without trusting the process that wrote it
(a compromised or buggy daemon could answer "all fine"), and it must be
checkable with the daemon stopped, or on a copy of the file on another machine.
SQL still lives in the store package (``kontextd.store.audit_sql``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from typing import IO, Annotated, Any

import typer

from kontext.common import paths, when
from kontext_cli import errors, render
from kontext_cli.commands.common import checked

KEY, CHECKPOINT = "key", "checkpoint"
RECORD = "kontext_record"  # marks key/checkpoint lines; event lines are plain events


def _open(db: str) -> sqlite3.Connection:
    from kontextd.store import audit_sql

    if not os.path.exists(db):
        raise errors.NotFound(f"no audit log at {db}")
    try:
        return audit_sql.open_readonly(db)
    except sqlite3.Error as exc:
        raise errors.KontextError(f"cannot open {db} read-only: {exc}") from exc


def verify(
    file: Annotated[
        str | None, typer.Option("--file", help="Verify an export (JSONL) instead of the log.")
    ] = None,
) -> None:
    """Walk the hash chain and signed checkpoints; exit 10 at the first broken link."""
    from kontextd.audit import verify as walker

    try:
        report = _verify_db(paths.resolve().database) if file is None else _verify_file(file)
    except walker.Broken as exc:
        raise errors.AuditBroken(
            f"audit log broken at event {exc.event_id}: {exc.message}"
        ) from exc
    span = f" (events {report.first_id}-{report.last_id})" if report.events else ""
    render.out.print(
        f"verified {report.events} events{span} and {report.checkpoints} checkpoints: intact"
    )
    if report.unanchored:
        render.note(
            f"note: the chain starts at event {report.first_id}, whose predecessor is not in "
            "the file; compare its prev_hash with the full log to anchor it"
        )


def _verify_db(db: str) -> Any:
    from kontextd.audit import verify as walker
    from kontextd.store import audit_sql

    conn = _open(db)
    try:
        conn.execute("BEGIN")  # one snapshot: the daemon may append meanwhile
        checkpoints = audit_sql.checkpoints(conn)
        keys = audit_sql.public_keys(conn)
        return walker.walk(audit_sql.event_rows(conn), checkpoints, keys)
    finally:
        conn.close()


def _verify_file(path: str) -> Any:
    from kontextd.audit import chain
    from kontextd.audit import verify as walker
    from kontextd.store.audit_sql import CheckpointRow, EventRow

    keys: dict[str, dict[str, Any]] = {}
    checkpoints: list[CheckpointRow] = []
    events: list[EventRow] = []
    for number, record in _lines(path):
        kind = record.pop(RECORD, None)
        if kind == KEY:
            keys[str(record["kid"])] = record["jwk"]
        elif kind == CHECKPOINT:
            checkpoints.append(CheckpointRow(**record))
        else:
            stored_hash = str(record.pop("hash", ""))
            body = chain.canonical(record).decode()
            row_id = record.get("id")
            if not isinstance(row_id, int):
                raise errors.UsageError(f"{path}:{number}: an event line without an id")
            events.append(EventRow(row_id, body, str(record.get("prev_hash")), stored_hash))
    return walker.walk(events, checkpoints, keys, trust_start=True)


def _lines(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise errors.UsageError(f"{path}:{number}: not a JSON line") from None
                if not isinstance(record, dict):
                    raise errors.UsageError(f"{path}:{number}: not a JSON object")
                yield number, record
    except OSError as exc:
        raise errors.NotFound(f"cannot read {path}: {exc.strerror}") from exc


def export(
    since: Annotated[
        str | None, typer.Option("--since", help="From this time: 2024-05-01, …T14:30, 7d.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Before this time.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output format: jsonl.")] = "jsonl",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write events as JSON lines a log shipper can ingest; 'audit verify --file' checks them."""
    if fmt != "jsonl":
        raise errors.UsageError(f"unknown format {fmt!r}: the only format is jsonl")
    start = checked(when.parse, since) if since else None
    end = checked(when.parse, until) if until else None
    conn = _open(paths.resolve().database)
    try:
        if output is None:
            _export(conn, sys.stdout, start, end)
        else:
            with open(output, "w", encoding="utf-8") as fh:
                _export(conn, fh, start, end)
    finally:
        conn.close()


def _export(conn: sqlite3.Connection, out: IO[str], start: float | None, end: float | None) -> None:
    """Keys first, then checkpoints in range, then events (each with its stored hash)."""
    from kontextd.store import audit_sql

    conn.execute("BEGIN")
    after = audit_sql.first_id_since(conn, start) if start is not None else 0

    def put(value: dict[str, Any]) -> None:
        out.write(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        out.write("\n")

    for kid, jwk in sorted(audit_sql.public_keys(conn).items()):
        put({RECORD: KEY, "kid": kid, "jwk": jwk})
    for cp in audit_sql.checkpoints(conn, since_event=after):
        put({RECORD: CHECKPOINT, **cp.__dict__})
    for row in audit_sql.iter_events(conn, after=after, until_ts=end):
        put({**json.loads(row.body), "hash": row.hash})


def register(app: typer.Typer) -> None:
    """Add verify and export to the ``audit`` command group."""
    app.command("verify")(verify)
    app.command("export")(export)
