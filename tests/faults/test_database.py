"""A corrupted or wrong-version database: one clear line naming the file, and the
file is left exactly as it was — never a silent reset to an empty database."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Kontext, one_line_error


def _garbage_header(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[0:100] = b"\x42" * 100  # the SQLite header: "SQLite format 3\0" and the page size
    db.write_bytes(bytes(data))


def _garbage_pages(db: Path) -> None:
    data = bytearray(db.read_bytes())
    for offset in range(4096, len(data), 4096):  # every page but the first
        data[offset : offset + 200] = b"\xff" * 200
    db.write_bytes(bytes(data))


def _half(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2 + 17])


def _newer_schema(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, 0)")
    conn.close()


def _not_sqlite(db: Path) -> None:
    db.write_text("this is a text file, not a database\n" * 200)


DAMAGE: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "garbage-header": (_garbage_header, ("not a database", "malformed")),
    "garbage-pages": (_garbage_pages, ("malformed", "not a database")),
    "truncated-to-half": (_half, ("malformed", "not a database", "disk image")),
    "newer-schema": (_newer_schema, ("schema version 99 is newer", "upgrade kontext")),
    "a-text-file": (_not_sqlite, ("not a database",)),
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("label", sorted(DAMAGE))
def test_a_damaged_database_is_named_and_left_alone(fresh_kx: Kontext, label: str) -> None:
    damage, words = DAMAGE[label]
    fresh_kx.start()
    fresh_kx.ok("agent", "create", "keeper", "--allow", "github:pulls:read")
    fresh_kx.stop()
    db = fresh_kx.database
    for side in ("-wal", "-shm"):  # a clean stop checkpointed the WAL into the file
        Path(f"{db}{side}").unlink(missing_ok=True)
    damage(db)
    before = _digest(db)
    line = one_line_error(fresh_kx.run("agent", "list"), 5)
    assert f"cannot open database {db}" in line, line
    assert any(word in line for word in words), line
    assert _digest(db) == before  # no silent reset, no "repair"
    assert sorted(p.name for p in db.parent.glob("kontext.db*")) in (
        ["kontext.db"],
        ["kontext.db", "kontext.db-shm", "kontext.db-wal"],
    )


def _doctor(k: Kontext) -> dict[str, dict[str, object]]:
    import json

    proc = k.run("doctor", "--json")
    return {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


STORAGE_FAILED = 15


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_database_removed_or_replaced_under_the_daemon_takes_no_more_writes(
    fresh_kx: Kontext, how: str
) -> None:
    """Writes into an unlinked file would be accepted, then gone at the next start."""
    k = fresh_kx
    k.start()
    k.ok("agent", "create", "keeper", "--allow", "github:pulls:read")
    db = k.database
    if how == "removed":
        db.unlink()
    else:  # an older copy put in its place, as a careless restore would
        copy = db.with_name("copy.db")
        with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        copy.replace(db)
    word = "was removed" if how == "removed" else "was replaced by another file"
    line = one_line_error(k.run("agent", "create", "later", "--allow", "github:pulls:read"), 15)
    assert f"the database {db} {word}" in line and "--new-database" in line
    exec_ = k.run("exec", "--agent", "keeper", "--", "true")
    assert exec_.returncode == 125 and word in exec_.stderr  # no credential either
    checks = _doctor(k)
    assert checks["database"]["status"] == "fail" and str(db) in str(checks["database"]["detail"])
    assert k.run("doctor").returncode == 12
    # It still stops cleanly (nothing to record it in), and no empty log is started
    # silently in the removed one's place.
    k.ok("daemon", "stop")
    if how == "removed":
        line = one_line_error(k.run("agent", "list"), 5)
        assert f"the database {db} is missing, but this home had one" in line
        assert not db.exists()


def test_a_missing_database_with_history_needs_an_explicit_new_database(
    fresh_kx: Kontext,
) -> None:
    k = fresh_kx
    k.start()
    k.ok("agent", "create", "keeper", "--allow", "github:pulls:read")
    k.stop()  # a checkpoint is signed at the stop: the anchor names the log's last event
    for name in ("kontext.db", "kontext.db-wal", "kontext.db-shm"):
        (k.database.parent / name).unlink(missing_ok=True)
    line = one_line_error(k.run("agent", "list"), 5)
    assert "is missing, but this home had one (its audit anchor names event" in line
    assert "kontext daemon start --new-database" in line
    assert not k.database.exists()  # nothing was created in its place

    started = k.run("daemon", "start", "--new-database")
    assert started.returncode == 0, started.stderr
    assert "keeper" not in k.ok("agent", "list").stdout
    (recreated,) = [e for e in k.audit() if e["event"] == "store.recreated"]
    assert recreated["abandoned"]["event_id"] > 0 and recreated["path"] == str(k.database)
    assert "intact" in k.ok("audit", "verify").stdout  # the new log verifies on its own
    again = k.run("daemon", "start", "--new-database")
    assert again.returncode == 2 and "already running" in again.stderr
