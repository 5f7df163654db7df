"""``kontext audit verify`` and ``kontext audit export``: reading the log as evidence.

Both read the SQLite file directly, opened read-only, instead of asking the
daemon: evidence should be checked without trusting the process that wrote it
(a compromised or buggy daemon could answer "all fine"), and it must be
checkable with the daemon stopped, or on a copy of the file on another machine.
Trust comes from outside the file: the keys and the newest checkpoint pinned
beside the signing key (``kontextd.audit.anchor``), and in every export.
SQL still lives in the store package (``kontextd.store.audit_sql``).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import IO, Annotated, Any

import typer

from kontext.common import config as config_mod
from kontext.common import paths, validate, when
from kontext.common.printable import printable
from kontext_cli import client, errors, render
from kontext_cli.commands.common import checked


def _open(db: str) -> sqlite3.Connection:
    from kontextd.store import audit_sql

    if not os.path.exists(db):
        raise errors.NotFound(f"no audit log at {db}")
    try:
        return audit_sql.open_readonly(db)
    except sqlite3.Error as exc:
        raise errors.KontextError(f"cannot open {db} read-only: {exc}") from exc


def _config(where: paths.Paths) -> config_mod.Config:
    try:
        return config_mod.load(where.config_file)
    except config_mod.ConfigError as exc:
        raise errors.ConfigInvalid(str(exc)) from exc


def verify(
    file: Annotated[
        str | None, typer.Option("--file", help="Verify an export (JSONL) instead of the log.")
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="With --file: trust only this key id; repeat for more."),
    ] = None,
) -> None:
    """Check the hash chain, the signed checkpoints and the pinned anchor; exit 10 if broken."""
    from kontextd.audit import verify as walker

    if key and file is None:
        raise errors.UsageError("--key goes with --file (the log is checked against its anchor)")
    try:
        lines, notes = _verify_db(paths.resolve()) if file is None else _verify_file(file, key)
    except walker.Broken as exc:
        message = printable(f"audit log broken at event {exc.event_id}: {exc.message}")
        raise errors.AuditBroken(message) from exc
    for line in lines:
        render.out.print(printable(line), emoji=False)
    for note in notes:
        render.note(printable(f"note: {note}"))


def _verify_db(where: paths.Paths) -> tuple[list[str], list[str]]:
    from kontextd.audit import evidence
    from kontextd.store import audit_sql

    cfg = _config(where)
    conn = _open(where.database)
    try:
        conn.execute("BEGIN")  # one snapshot: the daemon may append meanwhile
        trusted = _trusted(where, cfg, audit_sql.key_storages(conn))
        report = evidence.verify_database(conn, trusted)
        tail = evidence.uncovered(conn, report)
    finally:
        conn.close()
    interval = cfg.audit.checkpoint_interval
    notes = list(trusted.notes)
    evidence.require_signed(tail, interval)
    if tail is not None:
        notes.append(
            f"events {tail.first}-{tail.last} are not signed yet: the daemon signs within "
            f"{validate.format_duration(interval)} of an event, and when it stops"
        )
    pin = trusted.anchor.checkpoint
    pinned = f"checkpoint at event {pin.event_id}" if pin else "no checkpoint yet"
    kids = ", ".join(sorted(trusted.keys))
    return [_summary(report), f"anchor: {pinned}; key {kids}; pinned in {trusted.where}"], notes


def _trusted(where: paths.Paths, cfg: config_mod.Config, storages: set[str]) -> Any:
    from kontextd.audit import evidence
    from kontextd.audit.anchor import AnchorInvalid
    from kontextd.audit.verify import Broken
    from kontextd.secrets import SecretsUnavailable

    try:
        return evidence.read_anchor(where, cfg, storages)
    except SecretsUnavailable as exc:
        raise errors.SecretsUnavailable(evidence.unreadable(exc)) from exc
    except (AnchorInvalid, evidence.NoAnchor) as exc:
        raise Broken(1, evidence.unreadable(exc)) from exc


def _summary(report: Any) -> str:
    span = f" (events {report.first_id}-{report.last_id})" if report.events else ""
    plural = "" if report.checkpoints == 1 else "s"
    return (
        f"verified {report.events} events{span} and {report.checkpoints} checkpoint{plural}: intact"
    )


def _verify_file(path: str, wanted: list[str] | None) -> tuple[list[str], list[str]]:
    from kontextd.audit import exportfile
    from kontextd.audit import verify as walker

    try:
        parsed = exportfile.read(path)
    except exportfile.ExportInvalid as exc:
        raise errors.UsageError(printable(str(exc))) from exc
    except OSError as exc:
        raise errors.NotFound(f"cannot read {path}: {exc.strerror}") from exc
    keys, notes = exportfile.trusted_keys(parsed, wanted)
    pin = parsed.pinned_within()
    report = walker.walk(parsed.events, parsed.checkpoints, keys, trust_start=True, pinned=pin)
    if report.last_id is not None and report.covered < report.last_id:
        raise walker.Broken(
            report.covered + 1,
            f"no signed checkpoint in the file covers events after {report.covered} "
            "(added to the file, or exported before the daemon signed them)",
        )
    if report.unanchored:
        notes.append(
            f"the chain starts at event {report.first_id}, whose predecessor is not in "
            "the file; compare its prev_hash with the full log to anchor it"
        )
    signers = sorted({cp.kid for cp in parsed.checkpoints if cp.kind == "checkpoint"})
    by = f"signed by key {', '.join(signers)}" if signers else "no signed checkpoints"
    return [_summary(report), f"{by} (compare with 'kontext keys list' where it was made)"], notes


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
    where = paths.resolve()
    _sign_now(where)
    conn = _open(where.database)
    try:
        if output is None:
            warning = _export(conn, where, sys.stdout, start, end)
        else:
            with open(output, "w", encoding="utf-8") as fh:
                warning = _export(conn, where, fh, start, end)
    finally:
        conn.close()
    if warning:
        render.note(printable(f"note: {warning}"))


def _sign_now(where: paths.Paths) -> None:
    """A running daemon signs the newest events first, so the export ends signed."""
    try:
        with client.connect(where, autostart=False) as conn:
            conn.call("POST", "/v1/audit/checkpoint")
    except errors.KontextError:
        pass  # not running (it signed at its stop), or an empty log


def _export(
    conn: sqlite3.Connection,
    where: paths.Paths,
    out: IO[str],
    start: float | None,
    end: float | None,
) -> str | None:
    from kontextd.audit import evidence, exportfile
    from kontextd.audit.anchor import AnchorInvalid
    from kontextd.secrets import SecretsUnavailable
    from kontextd.store import audit_sql

    conn.execute("BEGIN")
    try:
        trusted = evidence.read_anchor(where, _config(where), audit_sql.key_storages(conn))
    except (SecretsUnavailable, AnchorInvalid, evidence.NoAnchor) as exc:
        raise errors.AuditBroken(
            printable(f"not exported: {evidence.unreadable(exc)}; 'kontext audit verify' says more")
        ) from exc
    return exportfile.write(conn, out, trusted, start, end)


def register(app: typer.Typer) -> None:
    """Add verify and export to the ``audit`` command group."""
    app.command("verify")(verify)
    app.command("export")(export)
