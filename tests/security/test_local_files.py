"""Another OS user and the daemon's directories: loose modes, foreign owners,
symlinks, and daemons racing for one ``KONTEXT_HOME``.

``tests/test_daemon.py`` covers a 0755 and a symlinked runtime dir and racing CLI
commands; these are the other variants. Every refusal is one line that says how
to fix it, and nothing is created through a link.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Kontext, one_line_error, wait_until

NOBODY = 65534


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o701, 0o711])
@pytest.mark.parametrize("which", ["run", "data", "log"])
def test_a_loosely_moded_directory_is_refused(fresh_kx: Kontext, which: str, mode: int) -> None:
    directory = fresh_kx.home / which
    directory.mkdir(mode=0o700)
    directory.chmod(mode)
    line = one_line_error(fresh_kx.run("agent", "list"), 5)
    assert "open to other users" in line and f"chmod 700 {directory}" in line
    assert not (fresh_kx.home / "data" / "kontext.db").exists()


@pytest.mark.parametrize("which", ["run", "data", "log"])
def test_a_directory_owned_by_another_uid_is_refused(fresh_kx: Kontext, which: str) -> None:
    if os.getuid() != 0:
        pytest.skip("chown to another uid needs root")
    directory = fresh_kx.home / which
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    line = one_line_error(fresh_kx.run("agent", "list"), 5)
    assert f"belongs to uid {NOBODY}" in line


@pytest.mark.parametrize("which", ["data", "log"])
def test_a_symlinked_data_or_log_dir_is_refused(
    fresh_kx: Kontext, tmp_path: Path, which: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (fresh_kx.home / which).symlink_to(elsewhere)
    line = one_line_error(fresh_kx.run("agent", "list"), 5)
    assert "symlink" in line
    assert list(elsewhere.iterdir()) == []


def test_a_file_where_the_runtime_dir_should_be_is_refused(fresh_kx: Kontext) -> None:
    fresh_kx.runtime.write_text("not a directory")
    line = one_line_error(fresh_kx.run("agent", "list"), 5)
    assert "not a plain directory" in line


def test_six_daemons_racing_for_one_home_leave_exactly_one(fresh_kx: Kontext) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kontextd"],
            env=fresh_kx.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        assert wait_until(lambda: sum(p.poll() is not None for p in procs) == 5, timeout=60)
        losers = [p for p in procs if p.poll() is not None]
        (winner,) = [p for p in procs if p.poll() is None]
        for loser in losers:
            err = loser.communicate(timeout=10)[1]
            assert loser.returncode == 4, err  # EXIT_ALREADY_RUNNING (Conflict)
            assert "already running" in err and "Traceback" not in err
        assert wait_until(lambda: fresh_kx.socket.exists(), timeout=30)
        assert wait_until(lambda: fresh_kx.run("daemon", "status").returncode == 0, timeout=30)
        assert fresh_kx.daemon_pid == winner.pid
        started = [e for e in fresh_kx.audit() if e["event"] == "daemon.started"]
        assert [e["pid"] for e in started] == [winner.pid]
        fresh_kx.ok("audit", "verify")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
            proc.communicate(timeout=30)
