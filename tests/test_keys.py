"""Signing-key rotation as a resource server and a crash see it.

- A rotated-in key is in the JWKS before it signs (``keys.rotation_grace``), so a
  resource server that cached the JWKS right after ``keys rotate`` still verifies
  the first tokens the new key signs (joserfc, with that cached set).
- Retirement is recorded in two steps; a daemon SIGKILLed with a retirement
  pending finishes it at its next start: no retired private key stays on disk.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Kontext, api_audit, api_new_agent, wait_until
from joserfc import jwt
from joserfc.jwk import KeySet

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def configure(k: Kontext, text: str) -> None:
    (k.home / "config").mkdir(mode=0o700, exist_ok=True)
    (k.home / "config" / "config.toml").write_text(text)


def key_rows(k: Kontext) -> dict[str, dict[str, object]]:
    """The signing_keys table, read as anyone with the disk would (read-only)."""
    with sqlite3.connect(f"file:{k.database}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT kid, alg, signs_from, retiring_at, retired_at FROM signing_keys"
        ).fetchall()
    return {r["kid"]: dict(r) for r in rows}


def private_half(k: Kontext, kid: str) -> Path:
    """Where the file fallback keeps a private key (no keyring on this machine)."""
    return k.home / "data" / "secrets" / f"signing-key-{kid}"


def signing_kid(k: Kontext, agent: str) -> str:
    proc, env = k.token_for(agent)
    try:
        return str(jwt.decode(env["KONTEXT_TOKEN"], KeySet.import_key_set(k.jwks())).header["kid"])
    finally:
        k.close(proc)


def test_a_rotated_key_is_published_before_it_signs(fresh_kx: Kontext) -> None:
    k = fresh_kx
    configure(k, '[keys]\nrotation_grace = "3s"\n')
    k.start()
    agent = api_new_agent(k, "github:pulls:read", prefix="grace")
    old = signing_kid(k, agent)
    assert private_half(k, old).exists()

    rotated = k.ok("keys", "rotate")
    new = rotated.stdout.split()[3].rstrip(";")
    assert "; signs from " in rotated.stdout and "when the 2 old keys retire" in rotated.stdout
    assert "signing from" in rotated.stderr
    # A resource server fetches the JWKS now and caches it.
    cached = KeySet.import_key_set(k.jwks())
    assert {new, old} <= {key.kid for key in cached.keys}
    assert signing_kid(k, agent) == old  # not yet: the old key signs during the grace

    assert wait_until(lambda: signing_kid(k, agent) == new, timeout=60, interval=0.2)
    proc, env = k.token_for(agent)
    try:  # the first tokens of the new key verify against the JWKS cached before it signed
        decoded = jwt.decode(env["KONTEXT_TOKEN"], cached, algorithms=["ES256"])
        assert decoded.header["kid"] == new
    finally:
        k.close(proc)
    # The old key stopped signing, and its private half is gone (two recorded steps).
    assert wait_until(lambda: not private_half(k, old).exists(), timeout=30)
    row = key_rows(k)[old]
    assert row["retiring_at"] is not None and row["retired_at"] is not None
    kinds = [(e["event"], e.get("kid")) for e in api_audit(k, n=200)]
    assert ("key.retiring", old) in kinds and ("key.retired", old) in kinds


def test_rotate_now_retires_at_once(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    agent = api_new_agent(k, "github:pulls:read", prefix="now")
    old = signing_kid(k, agent)
    rotated = k.ok("keys", "rotate", "--now")
    new = rotated.stdout.split()[3].rstrip(";")
    assert "retired 2" in rotated.stdout
    assert signing_kid(k, agent) == new
    assert not private_half(k, old).exists()
    assert key_rows(k)[old]["retired_at"] is not None


@pytest.mark.skipif(not os.path.exists(LIBFAKETIME), reason="libfaketime (Debian: faketime)")
def test_a_daemon_killed_mid_rotation_finishes_the_retirement_at_its_next_start(
    fresh_kx: Kontext,
) -> None:
    k = fresh_kx
    configure(k, '[keys]\nrotation_grace = "1h"\n')
    k.start()
    agent = api_new_agent(k, "github:pulls:read", prefix="crash")
    old = signing_kid(k, agent)
    k.ok("keys", "rotate")
    # Between the steps: the rotation is recorded, the old key still signs and its
    # private half is on disk. The daemon dies here.
    rows = key_rows(k)
    assert rows[old]["retiring_at"] is None and private_half(k, old).exists()
    pending = [kid for kid, r in rows.items() if r["signs_from"] is not None]
    assert len(pending) == 2  # the new ES256 and RS256 keys
    pid = k.daemon_pid
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10)

    # It comes back two hours later (the grace long over): start-up finishes the job.
    env = {
        **k.env,
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME": "+2h",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "kontextd"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stderr is not None
        lines = [daemon.stderr.readline()]  # notices (said once per home), then ready
        while lines[-1] and "kontextd: ready" not in lines[-1]:
            lines.append(daemon.stderr.readline())
        assert "kontextd: ready" in lines[-1], lines
        assert not private_half(k, old).exists()
        rows = key_rows(k)
        assert rows[old]["retired_at"] is not None
        assert all(rows[kid]["retiring_at"] is None for kid in pending)
        with k.control() as api:
            status = api.get("/v1/status").json()
        assert status["signing_kid"] in pending
        kinds = [(e["event"], e.get("kid")) for e in api_audit(k, n=200)]
        assert ("key.retired", old) in kinds
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
