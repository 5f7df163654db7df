"""Where confinement is impossible: ``auto`` runs unconfined and says so, ``require``
refuses, ``doctor`` reports the level. A kernel without user namespaces or without
Landlock is simulated with a seccomp filter (``without.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import without_not_connected
from tests.security.confinement_harness import (
    KONTEXT,
    MISSING,
    PY,
    Kontext,
    Setup,
    daemon_with_agents,
    events,
    needs_confinement,
)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with daemon_with_agents() as agents:
        yield agents


# -- where confinement is impossible: auto says so, require refuses ----------------------

WITHOUT = str(Path(__file__).with_name("without.py"))
needs_seccomp_helper = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.uname().machine not in ("x86_64", "aarch64"),
    reason="tests/security/without.py knows x86_64 and aarch64 syscall numbers",
)


def without(primitive: str, *argv: str) -> list[str]:
    """``argv`` run as if the kernel lacked ``primitive`` (a seccomp filter: without.py)."""
    return [PY, WITHOUT, primitive, "--", *argv]


def run_without(k: Kontext, primitive: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        without(primitive, KONTEXT, *args), capture_output=True, text=True, timeout=120, env=k.env
    )


@needs_seccomp_helper
@pytest.mark.parametrize(
    ("primitive", "words"),
    [("userns", "no user namespace"), ("landlock", "no Landlock")],
)
def test_auto_runs_unconfined_and_says_so_once(setup: Setup, primitive: str, words: str) -> None:
    k = setup.k
    peek = f"head -c 15 {k.database}"
    proc = run_without(k, primitive, "exec", "--agent", setup.agent, "--", "sh", "-c", peek)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "SQLite format 3"  # unconfined indeed: it read the database
    (line,) = without_not_connected(proc.stderr).splitlines()
    assert line.startswith(f"kontext: warning: running agent:{setup.agent} unconfined: ")
    assert words in line and 'exec.confine = "off"' in line
    event = events(k, "exec.unconfined")[-1]
    assert words in event["reason"] and event["agent"]["id"] == f"agent:{setup.agent}"
    doctor = json.loads(run_without(k, primitive, "doctor", "--json").stdout)
    assert doctor["confinement"]["level"] == "unconfined"
    assert words in doctor["confinement"]["reason"]


@needs_seccomp_helper
def test_require_refuses_to_run_unconfined(setup: Setup, tmp_path: Path) -> None:
    k = setup.k
    marker = tmp_path / "ran"
    k.ok("config", "set", "exec.confine", "require")
    try:
        without_userns = run_without(
            k, "userns", "exec", "--agent", setup.agent, "--", "touch", str(marker)
        )
        no_confine = k.run(
            "exec", "--agent", setup.agent, "--no-confine", "--", "touch", str(marker)
        )
        doctor = json.loads(run_without(k, "userns", "doctor", "--json").stdout or "{}")
        confined = k.run("exec", "--agent", setup.agent, "--", "true")
    finally:
        k.ok("config", "set", "exec.confine", "auto")
    for proc in (without_userns, no_confine):
        assert proc.returncode == 123, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith("kontext: exec.confine is 'require'"), line
    assert "--no-confine" in no_confine.stderr
    assert not marker.exists()
    assert doctor["confinement"]["level"] == "unconfined"
    assert [c["status"] for c in doctor["checks"] if c["name"] == "confine"] == ["fail"]
    if MISSING is None:
        assert confined.returncode == 0, confined.stderr


def test_doctor_reports_the_level(setup: Setup) -> None:
    report = json.loads(setup.k.run("doctor", "--json").stdout)
    level = report["confinement"]
    assert level["mode"] == "auto"
    if MISSING is None:
        assert level["level"] == "confined" and "Landlock" in level["reason"]
    else:
        assert level["level"] == "unconfined" and level["reason"]


@needs_confinement
def test_an_agent_cannot_start_in_kontexts_own_directory(setup: Setup) -> None:
    k = setup.k
    proc = subprocess.run(
        [KONTEXT, "exec", "--agent", setup.agent, "--", "true"],
        cwd=k.home / "data",
        capture_output=True,
        text=True,
        env=k.env,
        timeout=60,
    )
    assert proc.returncode == 125
    (line,) = proc.stderr.splitlines()
    assert "inside kontext's own files" in line and "cd elsewhere" in line
