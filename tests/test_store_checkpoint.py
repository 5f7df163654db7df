"""The WAL is checkpointed off the committing thread (``Store.checkpoint_elsewhere``).

The daemon turns SQLite's automatic checkpoint off on its store connection, so a
commit on the loopback loop never copies and syncs the WAL, and its reaper calls
``Store.checkpoint_if_due`` instead. Observed on a real database file: while the
WAL grows past SQLite's own mark no commit checkpoints (the database file stays
as migrations left it); ``checkpoint_if_due`` copies the pages in, and the next
commit starts the WAL over in the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

from kontextd.store.db import WAL_CHECKPOINT_BYTES, Store


def _fill(store: Store, path: Path) -> None:
    """Audit appends, one commit each, until the WAL is past the mark."""
    while os.stat(f"{path}-wal").st_size < WAL_CHECKPOINT_BYTES + 65536:
        with store.transaction() as tx:
            tx.append_event({"event": "test.filler", "padding": "x" * 4000})


def _wal_sequence(path: Path) -> int:
    """The WAL header's checkpoint sequence number: one more each time the WAL starts
    over (sqlite.org/fileformat.html#walformat, bytes 12-15)."""
    with open(f"{path}-wal", "rb") as wal:
        return int.from_bytes(wal.read(16)[12:16], "big")


def test_commits_do_not_checkpoint_and_the_reapers_call_does(tmp_path: Path) -> None:
    path = tmp_path / "db" / "kontext.db"
    store = Store(str(path))
    try:
        store.checkpoint_elsewhere()
        store.checkpoint_if_due()  # whatever migrations left in the WAL
        before = os.stat(path).st_size
        _fill(store, path)
        assert os.stat(path).st_size == before, "a commit checkpointed the WAL"
        sequence = _wal_sequence(path)
        assert store.checkpoint_if_due() is True
        assert os.stat(path).st_size > before, "the pages were not copied in"
        assert store.checkpoint_if_due() is False, "nothing was committed since"
        # The next commit starts the WAL over (a complete checkpoint, no reader): it is
        # written from the start again, and the file keeps its size (no cut and regrow).
        wal_size = os.stat(f"{path}-wal").st_size
        with store.transaction() as tx:
            tx.append_event({"event": "test.after"})
        assert os.stat(f"{path}-wal").st_size == wal_size
        assert _wal_sequence(path) == sequence + 1, "the WAL did not start over"
        assert store.checkpoint_if_due() is True
    finally:
        store.close()


def test_a_store_left_as_sqlite_configures_it_still_checkpoints(tmp_path: Path) -> None:
    """Without ``checkpoint_elsewhere`` (the CLI's offline reads, tests) nothing changed."""
    path = tmp_path / "db" / "kontext.db"
    store = Store(str(path))
    try:
        before = os.stat(path).st_size
        for _ in range(2000):  # SQLite's mark is ~1,000 pages: one page and more a commit
            with store.transaction() as tx:
                tx.append_event({"event": "test.filler", "padding": "x" * 4000})
            if os.stat(path).st_size > before:
                break
        assert os.stat(path).st_size > before, "no commit checkpointed"
    finally:
        store.close()
