"""Confinement for an ordinary user: the same attacks, by uid 65534 instead of root.

Root keeps its capabilities in a user namespace across ``execve``, everyone else
loses them, so kontext confines the two differently (root gets a second, nested
namespace that locks the mounts); and a non-root process's ``/proc/self`` files
are its own only while it is dumpable. This runs the daemon, the wrapper and the
agent as uid 65534 (``setpriv``; the tests run as root), with another uid-65534
process outside the agent's tree as the neighbour it must not reach.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KONTEXT, Kontext, short_home, wait_until
from tests.security.confinement_harness import AGENT_SIDE, assert_refused, needs_confinement

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
KONTEXTD = str(Path(KONTEXT).with_name("kontextd"))
# The agent's own interpreter: standard library only, and reachable by uid 65534 (a
# venv's python may be a link into root's home, which only setpriv's own exec can cross).
AGENT_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

APPROVE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from conftest import Kontext, approve_over_http
    approve_over_http(Kontext(Path(sys.argv[2])), sys.argv[3], ["github:pulls:read"])
    """
)


@pytest.fixture
def nobody() -> Iterator[tuple[Kontext, subprocess.Popen[bytes]]]:
    """A daemon of uid 65534 in a home of its own, an agent with consent, a neighbour."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to act as uid 65534")
    k = Kontext(short_home())
    os.chown(k.home, NOBODY, NOBODY)
    k.env["HOME"] = str(k.home)
    daemon = subprocess.Popen(
        [*AS_NOBODY, KONTEXTD], env=k.env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    neighbour = subprocess.Popen([*AS_NOBODY, "sleep", "600"])
    try:
        assert wait_until(lambda: (k.runtime / "http.json").exists(), timeout=30)
        create = ["agent", "create", "nb", "--allow", "github:pulls:read"]
        done = subprocess.run([*AS_NOBODY, KONTEXT, *create], env=k.env, capture_output=True)
        assert done.returncode == 0, done.stderr
        tests = str(Path(__file__).parents[1])
        approve = [*AS_NOBODY, sys.executable, "-c", APPROVE, tests, str(k.home), "nb"]
        approved = subprocess.run(approve, env=k.env, capture_output=True)
        assert approved.returncode == 0, approved.stderr
        assert wait_until(lambda: os.stat(f"/proc/{neighbour.pid}").st_uid == NOBODY)
        yield k, neighbour
    finally:
        neighbour.kill()
        neighbour.wait()
        subprocess.run([*AS_NOBODY, KONTEXT, "daemon", "stop"], env=k.env, capture_output=True)
        if daemon.poll() is None:
            daemon.kill()
        daemon.wait(timeout=30)
        shutil.rmtree(k.home, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory uid 65534 can reach (pytest's own tmp_path lives under a 0700 one)."""
    where = short_home()
    os.chown(where, NOBODY, NOBODY)
    yield where
    shutil.rmtree(where, ignore_errors=True)


@needs_confinement
def test_an_ordinary_users_agent_is_confined_too(
    nobody: tuple[Kontext, subprocess.Popen[bytes]], scratch: Path
) -> None:
    k, neighbour = nobody
    tmp_path = scratch
    secrets = sorted((k.home / "data" / "secrets").glob("*"))
    spec = {
        "groups": ["raw", "files", "signals", "ptrace", "mounts", "consent"],
        "base_url": k.base_url,
        "wide_scope": "github:contents:write",
        "socket": str(k.socket),
        "agent": "nb",
        "other_agent": "nb",
        "disabled_agent": "nb",
        "evil_agent": "evil",
        "database": str(k.database),
        "db_name": k.database.name,
        "secret_files": {
            "database": str(k.database),
            "WAL": f"{k.database}-wal",
            "OAuth client secret": str(k.runtime / "oauth-client-secret"),
            **{f"fallback secret {p.name[:12]}": str(p) for p in secrets},
        },
        "dirs": {"data dir": str(k.home / "data"), "runtime dir": str(k.runtime)},
        "policy_dir": str(k.home / "config" / "policy.d"),
        "daemon_pid": k.daemon_pid,
        "outside_pid": neighbour.pid,
        "strace": shutil.which("strace"),
        "bus_addresses": [],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "results.json"
    argv = ["exec", "--agent", "nb", "--", AGENT_PYTHON, AGENT_SIDE, "direct", str(out)]
    proc = subprocess.run(
        [*AS_NOBODY, KONTEXT, *argv, str(tmp_path / "spec.json")],
        env=k.env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "unconfined" not in proc.stderr, proc.stderr
    results = json.loads(out.read_text())["results"]
    assert_refused(results, 40)
    by_name = {r["name"]: r["detail"] for r in results}
    assert "FileNotFoundError" in by_name["read database"]
    assert (
        "must be superuser" in by_name["unshare -Urm; umount"]
        or "not mounted" in by_name["unshare -Urm; umount"]
    )
    assert neighbour.poll() is None and k.daemon_pid == spec["daemon_pid"]
    # Non-dumpable, it hides its /proc/PID/fd from a daemon of its uid: a tree process
    # whose files cannot be read counts as holding the connection (fail closed).
    page = by_name["load its own consent page"]
    assert page.startswith("403 ") and "inside agent:nb" in page, page
    assert "not dumpable" in page, page
