"""The audit log as evidence, read without the daemon: the chain checked against the
anchor pinned outside the database, and which events no signature covers yet.

``kontext audit verify`` and ``export`` call these with the database opened
read-only (``audit_sql.open_readonly``) inside one read transaction.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from kontext.common import validate
from kontext.common.config import Config
from kontext.common.paths import Paths
from kontextd.audit import verify as walker
from kontextd.audit.anchor import Anchor, AnchorInvalid, AnchorStore
from kontextd.secrets import SecretStore, SecretsUnavailable
from kontextd.store import audit_sql
from kontextd.tokens.keys import thumbprint

GRACE = 60.0  # seconds the daemon's housekeeping may take past the interval


class NoAnchor(Exception):
    """No trust anchor is pinned where this log's signing key lives."""


@dataclass
class Uncovered:
    """Events after the newest signed checkpoint (and the pin)."""

    first: int
    last: int
    oldest_ts: float
    newest_ts: float
    after_stop: int | None = None  # a ``daemon.stopped`` among them: a clean stop signs one

    def ahead(self, now: float | None = None) -> bool:
        """Some claim a time after now (which would keep forged events "recent" for ever)."""
        return self.newest_ts - (time.time() if now is None else now) > GRACE

    def stale(self, interval: float, now: float | None = None) -> bool:
        """True when the daemon should have signed them by now, or they claim the future."""
        age = (time.time() if now is None else now) - self.oldest_ts
        return self.after_stop is not None or age > interval + GRACE or self.ahead(now)


@dataclass
class Trusted:
    """The pinned keys, where they were found, and anything worth saying about them."""

    anchor: Anchor
    where: str
    notes: list[str] = field(default_factory=list)

    @property
    def keys(self) -> dict[str, dict[str, Any]]:
        return dict(self.anchor.keys)


def read_anchor(paths: Paths, config: Config, storages: set[str]) -> Trusted:
    """The anchor pinned for this home; raises ``NoAnchor``, ``AnchorInvalid`` or
    ``SecretsUnavailable`` (keyring locked, hanging, refused, or not reachable from
    here while ``storages`` — where the database says its keys live — names one)."""
    secrets = SecretStore(paths.secrets, paths.data, config.secrets_fallback)
    store = AnchorStore(secrets)
    anchor = store.load()
    keyrings = sorted(s for s in storages if s.startswith("keyring:"))
    if anchor is None and secrets.is_fallback and keyrings:
        raise SecretsUnavailable(
            f"this log's signing key and trust anchor are in an OS keyring ({keyrings[0]}), "
            "which cannot be reached from here: verify where that keyring is unlocked"
        )
    if anchor is None:
        raise NoAnchor(
            f"no trust anchor is pinned in {store.where}: the anchor was removed, the "
            "database comes from elsewhere, or it predates anchors (start the daemon "
            "once to pin it)"
        )
    return Trusted(anchor, store.where, key_notes(anchor))


def key_notes(anchor: Anchor) -> list[str]:
    """Keys pinned under an id that is not their RFC 7638 thumbprint (an older kontext
    named them otherwise): trusted because pinned, and said so."""
    notes = []
    for kid, jwk in sorted(anchor.keys.items()):
        if thumbprint(jwk) != kid:
            notes.append(
                f"key {kid[:64]} is not named by its RFC 7638 thumbprint ({thumbprint(jwk)}); "
                "it is trusted because it is pinned"
            )
    if anchor.first_use is not None:
        day = time.strftime("%Y-%m-%d %H:%M", time.localtime(anchor.first_use))
        notes.append(f"the anchor trusted this log as it stood on {day} (pinned on first use)")
    return notes


def verify_database(conn: sqlite3.Connection, trusted: Trusted) -> walker.Report:
    """Walk every event and checkpoint against the pinned keys and checkpoint."""
    pin = trusted.anchor.checkpoint
    pinned = walker.pinned_row(pin.event_id, pin.event_hash, pin.id) if pin else None
    checkpoints = audit_sql.checkpoints(conn)
    return walker.walk(audit_sql.event_rows(conn), checkpoints, trusted.keys, pinned=pinned)


def uncovered(conn: sqlite3.Connection, report: walker.Report) -> Uncovered | None:
    """The events after the newest verified signature, if any."""
    if report.last_id is None or report.last_id <= report.covered:
        return None
    first = max(report.covered, (report.first_id or 1) - 1) + 1
    oldest, newest = audit_sql.uncovered_span(conn, first - 1)
    return Uncovered(first, report.last_id, oldest, newest, audit_sql.stop_after(conn, first - 1))


def require_signed(tail: Uncovered | None, interval: float) -> None:
    """Raise ``Broken`` when events the daemon should have signed by now are unsigned
    (it signs within ``interval`` of an event, and when it stops)."""
    if tail is None or not tail.stale(interval):
        return
    covered = tail.first - 1
    if tail.after_stop is not None:
        raise walker.Broken(
            tail.first,
            f"no checkpoint covers events after {covered}: a stopping daemon signs its last "
            f"events, yet daemon.stopped (event {tail.after_stop}) is unsigned "
            "(events written without the key?)",
        )
    if tail.ahead():
        newest = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(tail.newest_ts))
        raise walker.Broken(
            tail.first,
            f"no checkpoint covers events after {covered}: events {tail.first}-{tail.last} "
            f"claim times up to {newest}, after now (a clock set back, or events written "
            "without the key)",
        )
    oldest = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(tail.oldest_ts))
    raise walker.Broken(
        tail.first,
        f"no checkpoint covers events after {covered}: events {tail.first}-{tail.last}, the "
        f"first from {oldest}, are older than the "
        f"{validate.format_duration(int(interval))} checkpoint interval (the daemon crashed "
        "before signing them, or they were written without the key)",
    )


def unreadable(exc: Exception) -> str:
    """One line for an anchor that cannot be read."""
    if isinstance(exc, AnchorInvalid):
        return f"the pinned trust anchor is damaged: {exc}"
    if isinstance(exc, SecretsUnavailable):
        return f"cannot read the pinned trust anchor: {exc}"
    return str(exc)
