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
