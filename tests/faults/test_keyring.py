"""Keyring failures: a hanging Secret Service (timeouts, never a hung command or
daemon), and a real one — gnome-keyring under ``dbus-run-session`` — round trip.

"No backend" (headless Linux: the 0600 file fallback, announced once) is
``tests/test_daemon.py::test_first_start_announces_itself_and_the_fallback_once``;
refusing that fallback is ``tests/test_doctor.py``'s and ``tests/test_agents.py``'s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KONTEXT, Kontext, api_new_agent, short_home

HERE = Path(__file__).parent
KEYRING_TIMEOUT = 5  # kontextd.secrets.KEYRING_TIMEOUT


@pytest.fixture
def hanging(fresh_kx: Kontext, tmp_path: Path) -> Iterator[tuple[Kontext, Path]]:
    flag = tmp_path / "hang"
    fresh_kx.env.update(
        {
            "PYTHONPATH": str(HERE),
            "PYTHON_KEYRING_BACKEND": "hanging_keyring.Hanging",
            "KONTEXT_TEST_KEYRING_HANG": str(flag),
        }
    )
    yield fresh_kx, flag
    flag.unlink(missing_ok=True)


def _timed(k: Kontext, *args: str, input: str | None = None) -> tuple[float, str, int]:
    started = time.monotonic()
    proc = k.run(*args, input=input, timeout=60)
    return time.monotonic() - started, proc.stderr, proc.returncode


def test_a_secret_service_hanging_at_start_is_a_timeout(hanging: tuple[Kontext, Path]) -> None:
    k, flag = hanging
    flag.touch()
    took, err, code = _timed(k, "agent", "list")
    assert code == 7 and "Traceback" not in err  # secret storage unavailable (the table)
    assert len(err.splitlines()) == 1, err
    assert f"did not answer within {KEYRING_TIMEOUT}s" in err
    assert took < KEYRING_TIMEOUT + 20


def test_a_secret_service_that_hangs_later_times_out_and_never_wedges_the_daemon(
    hanging: tuple[Kontext, Path],
) -> None:
    k, flag = hanging
    k.start()
    status = json.loads(k.ok("daemon", "status", "--json").stdout)
    assert status["secrets"] == "keyring:Hanging" and status["secrets_fallback"] is False
    agent = api_new_agent(k, "github:pulls:read", prefix="hang")
    flag.touch()
    took, err, code = _timed(
        k,
        "integration",
        "connect",
        "github",
        "--secret-stdin",
        "--no-verify",
        input="ghp_example\n",
    )
    assert code != 0 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert f"did not answer within {KEYRING_TIMEOUT}s" in err
    assert took < KEYRING_TIMEOUT + 15
    # The signing key is already in memory: issuance goes on meanwhile.
    assert k.run("exec", "--agent", agent, "--", sys.executable, "-c", "pass").returncode == 0
    flag.unlink()
    k.ok("integration", "connect", "github", "--secret-stdin", "--no-verify", input="ghp_example\n")
    flag.touch()
    # A stop with a keyring call still blocked ends promptly all the same.
    _timed(k, "integration", "disconnect", "github")
    took, err, code = _timed(k, "daemon", "stop")
    assert code == 0, err
    assert took < 20


DRIVER = textwrap.dedent(
    """
    import json, os, subprocess, sys
    out = subprocess.run(
        ["gnome-keyring-daemon", "--unlock", "--components=secrets", "--daemonize"],
        input=b"test-password\\n", capture_output=True, timeout=30,
    )
    for line in out.stdout.decode().splitlines():
        name, _, value = line.partition("=")
        if name:
            os.environ[name] = value
    kontext, home = sys.argv[1], sys.argv[2]
    env = {**os.environ, "KONTEXT_HOME": home}

    def run(*args, input=None):
        proc = subprocess.run([kontext, *args], env=env, capture_output=True, text=True,
                              input=input, timeout=60)
        return {"code": proc.returncode, "out": proc.stdout, "err": proc.stderr}

    result = {"start": run("daemon", "start")}
    result["status"] = json.loads(run("daemon", "status", "--json")["out"] or "{}")
    result["connect"] = run("integration", "connect", "github", "--secret-stdin", "--no-verify",
                            input="ghp_in_the_secret_service\\n")
    result["restart"] = [run("daemon", "stop"), run("daemon", "start")]
    result["status_again"] = json.loads(run("daemon", "status", "--json")["out"] or "{}")
    import keyring
    service = "kontext/" + __import__("hashlib").sha256(
        os.path.join(home, "data").encode()).hexdigest()[:16]
    kid = result["status"].get("signing_kid", "")
    result["backend"] = type(keyring.get_keyring()).__module__
    result["key_in_keyring"] = bool(keyring.get_password(service, f"signing-key-{kid}"))
    run("daemon", "stop")
    print(json.dumps(result))
    """
)


def in_a_secret_service(tmp_path: Path, home: Path, script: str) -> dict[str, Any]:
    """Run ``script`` (argv: kontext, home) in a dbus session with an unlocked
    gnome-keyring; its last stdout line is a JSON result."""
    for tool in ("dbus-run-session", "gnome-keyring-daemon"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: dbus, gnome-keyring)")
    (tmp_path / "home").mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(script)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KONTEXT_", "DBUS_", "PYTHON_K"))
    }
    env.update({"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "home")})
    proc = subprocess.run(
        ["dbus-run-session", "--", sys.executable, str(driver), KONTEXT, str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_a_real_secret_service_holds_the_signing_key(tmp_path: Path) -> None:
    home = short_home()
    try:
        result = in_a_secret_service(tmp_path, home, DRIVER)
        assert result["start"]["code"] == 0, result["start"]
        assert "keyring backend works" not in result["start"]["err"]  # no fallback notice
        assert result["status"]["secrets"].startswith("keyring:")
        assert result["status"]["secrets_fallback"] is False
        assert "SecretService" in result["backend"]
        assert result["key_in_keyring"] is True
        assert result["connect"]["code"] == 0, result["connect"]
        # The same key after a restart: it came back out of the Secret Service.
        assert [r["code"] for r in result["restart"]] == [0, 0], result["restart"]
        assert result["status_again"]["signing_kid"] == result["status"]["signing_kid"]
        # Nothing secret on disk: no fallback directory, no key or API key in any file.
        assert not (home / "data" / "secrets").exists()
        for path in home.rglob("*"):
            if path.is_file() and not path.is_socket():
                data = path.read_bytes()
                assert b"PRIVATE KEY" not in data and b"ghp_in_the_secret_service" not in data
    finally:
        shutil.rmtree(home, ignore_errors=True)


AUDIT_DRIVER = DRIVER.split("result = {")[0] + textwrap.dedent(
    """
    import sqlite3
    run("daemon", "start")
    run("agent", "create", "anchored", "--allow", "github:pulls:read")
    run("daemon", "stop")
    import keyring
    service = "kontext/" + __import__("hashlib").sha256(
        os.path.join(home, "data").encode()).hexdigest()[:16]
    result = {"anchor": json.loads(keyring.get_password(service, "audit-anchor") or "null")}
    result["clean"] = run("audit", "verify")
    db = sqlite3.connect(os.path.join(home, "data", "kontext.db"), isolation_level=None)
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DROP TRIGGER audit_checkpoints_no_delete")
    last = db.execute("SELECT MAX(id) FROM audit_events").fetchone()[0]
    db.execute("DELETE FROM audit_events WHERE id >= ?", (last - 1,))
    db.execute("DELETE FROM audit_checkpoints WHERE event_id >= ?", (last - 1,))
    db.close()
    result["last"] = last
    result["cut"] = run("audit", "verify")
    print(json.dumps(result))
    """
)


def test_with_a_real_secret_service_the_audit_anchor_lives_there(tmp_path: Path) -> None:
    """The anchor sits in the Secret Service next to the private key — no file on disk —
    and a log cut while the daemon is stopped fails to verify against it."""
    home = short_home()
    try:
        result = in_a_secret_service(tmp_path, home, AUDIT_DRIVER)
        anchor = result["anchor"]
        assert anchor is not None and anchor["checkpoint"]["event_id"] == result["last"]
        assert result["clean"]["code"] == 0, result["clean"]
        assert "pinned in keyring:" in result["clean"]["out"]
        assert result["cut"]["code"] == 10, result["cut"]
        assert "the pinned checkpoint names event" in result["cut"]["err"]
        assert not (home / "data" / "secrets").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)
