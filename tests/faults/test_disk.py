"""A full disk and a read-only data directory (a small tmpfs as ``KONTEXT_HOME/data``).

Issuance refuses with one clear line naming the database; the daemon keeps
serving; nothing is corrupted (``integrity_check``, ``audit verify``); once space
returns it issues again. A credential whose revocation cannot be written is dead
at once anyway (the store remembers it in memory).
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Kontext, api_new_agent, wait_until


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(fresh_kx: Kontext) -> Iterator[Kontext]:
    data = fresh_kx.home / "data"
    data.mkdir(mode=0o700)
    if not _mount("-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(data)):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        yield fresh_kx
    finally:
        fresh_kx.stop()
        time.sleep(0.2)
        subprocess.run(["umount", "-l", str(data)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    return filler


def _intact(k: Kontext) -> None:
    with sqlite3.connect(f"file:{k.database}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "intact" in k.ok("audit", "verify").stdout


def _exec(k: Kontext, agent: str) -> subprocess.CompletedProcess[str]:
    return k.run("exec", "--agent", agent, "--", sys.executable, "-c", "pass")


def _until_refused(k: Kontext, agent: str) -> list[subprocess.CompletedProcess[str]]:
    """Execs on a full disk until three are refused. The first may still be recorded:
    the WAL file keeps its size and is written again from its start once checkpointed
    (``Store.checkpoint_elsewhere``), so commits fill its room before the disk refuses;
    once it is full, a checkpoint cannot end either (the database cannot grow)."""
    refused: list[subprocess.CompletedProcess[str]] = []
    for _ in range(60):
        proc = _exec(k, agent)
        if proc.returncode != 0 or refused:
            refused.append(proc)
        if len(refused) == 3:
            return refused
    raise AssertionError("60 execs on a full disk were all recorded")


def test_a_full_disk_refuses_issuance_clearly_and_recovers(small_disk: Kontext) -> None:
    k = small_disk
    k.start()
    agent = api_new_agent(k, "github:pulls:read", prefix="full")
    holder, env = k.token_for(agent)  # a credential held across the outage
    filler = _fill(k.home / "data")
    try:
        refused = _until_refused(k, agent)
        created = k.run("agent", "create", "while-full", "--allow", "github:pulls:read")
        # The held credential's end cannot be written, yet it is dead at once.
        k.close(holder)
        assert wait_until(lambda: k.introspect(env["KONTEXT_TOKEN"]) == {"active": False})
        assert k.ok("daemon", "status").returncode == 0
    finally:
        filler.unlink()
    for proc in [*refused, created]:
        assert proc.returncode != 0
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert f"cannot write the database {k.database}" in lines[0]
        assert "full" in lines[0] and "nothing was changed" in lines[0]
    assert "while-full" not in k.ok("agent", "list").stdout
    assert _exec(k, agent).returncode == 0
    _intact(k)


def test_a_read_only_data_dir_is_one_clear_line_then_recovers(small_disk: Kontext) -> None:
    k = small_disk
    k.start()
    agent = api_new_agent(k, "github:pulls:read", prefix="ro")
    k.stop()
    data = str(k.home / "data")
    assert wait_until(lambda: _mount("-o", "remount,ro", data), timeout=10)
    try:
        proc = _exec(k, agent)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert len(proc.stderr.splitlines()) == 1
        line = proc.stderr.strip()
        assert str(k.home / "data") in line
        assert any(w in line for w in ("read-only", "readonly", "EROFS")), line
    finally:
        assert _mount("-o", "remount,rw", data)
    assert _exec(k, agent).returncode == 0
    _intact(k)
