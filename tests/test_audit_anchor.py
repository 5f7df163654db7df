"""The audit log against someone who can write the disk but does not hold the signing key.

Each attack is done to the real database file with sqlite3 while the daemon is
stopped, as someone with the disk would (the private key file is not touched):
cut the newest events together with the checkpoints naming them; rewrite the
chain and drop every checkpoint; add their own key to ``signing_keys`` and
re-sign; swap in another database. ``kontext audit verify`` must exit 10 naming
what is wrong, because the keys and the newest checkpoint are pinned outside the
database (DESIGN rule 9), beside the private key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator

import jwt
import pytest
from conftest import Kontext, short_home, wait_until
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit_verify import broken_at, db

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


@pytest.fixture
def stopped(fresh_kx: Kontext) -> Iterator[Kontext]:
    """A fresh install with a handful of events, stopped cleanly (no `audit checkpoint`)."""
    name = fresh_kx.agent("github:pulls:read")
    for _ in range(2):
        fresh_kx.ok("exec", "--agent", name, "--", "true")
    fresh_kx.stop()
    yield fresh_kx


def newest(k: Kontext) -> int:
    return int(db(k).execute("SELECT MAX(id) FROM audit_events").fetchone()[0])


def cut_from(k: Kontext, first: int) -> None:
    """Delete events ``first``.. and every checkpoint naming them (triggers dropped)."""
    with db(k) as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DROP TRIGGER audit_checkpoints_no_delete")
        conn.execute("DELETE FROM audit_events WHERE id >= ?", (first,))
        conn.execute("DELETE FROM audit_checkpoints WHERE event_id >= ?", (first,))


def rechain(conn: sqlite3.Connection, start: int, edit: dict[str, object]) -> None:
    """Edit event ``start`` and recompute every later link, as a careful forger would."""
    rows = conn.execute("SELECT id, body FROM audit_events WHERE id >= ? ORDER BY id", (start,))
    prev = conn.execute("SELECT hash FROM audit_events WHERE id = ?", (start - 1,)).fetchone()[0]
    for row_id, body in rows.fetchall():
        record = json.loads(body) | {"prev_hash": prev}
        if row_id == start:
            record |= edit
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(text.encode()).hexdigest()
        conn.execute(
            "UPDATE audit_events SET body = ?, prev_hash = ?, hash = ? WHERE id = ?",
            (text, prev, digest, row_id),
        )
        prev = digest


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def attacker_key() -> tuple[ec.EllipticCurvePrivateKey, str, dict[str, str]]:
    """A fresh P-256 key named, as kontext names keys, by its RFC 7638 thumbprint."""
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }
    members = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return private, b64(hashlib.sha256(members.encode()).digest()), jwk


def test_a_clean_stop_signs_and_pins_a_checkpoint(stopped: Kontext) -> None:
    last = newest(stopped)
    kind = db(stopped).execute("SELECT event FROM audit_events WHERE id = ?", (last,)).fetchone()
    assert kind == ("daemon.stopped",)
    out = stopped.ok("audit", "verify").stdout.splitlines()
    assert out[0].startswith(f"verified {last} events")
    assert out[1].startswith(f"anchor: checkpoint at event {last}; key ")
    anchor = stopped.home / "data" / "secrets" / "audit-anchor"
    assert oct(anchor.stat().st_mode & 0o777) == "0o600"
    assert json.loads(anchor.read_text())["checkpoint"]["event_id"] == last


def test_cutting_the_newest_events_and_their_checkpoints_is_caught(stopped: Kontext) -> None:
    last = newest(stopped)
    cut_from(stopped, last - 2)
    err = broken_at(stopped)
    assert err.startswith(
        f"kontext: audit log broken at event {last - 2}: is missing: the pinned checkpoint "
        f"names event {last}"
    )


def test_a_rewritten_chain_with_every_checkpoint_dropped_is_caught(stopped: Kontext) -> None:
    last = newest(stopped)
    with db(stopped) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_checkpoints_no_delete")
        rechain(conn, 4, {"forged": True})
        conn.execute("DELETE FROM audit_checkpoints")
    err = broken_at(stopped)
    assert err.startswith(
        f"kontext: audit log broken at event {last}: differs from the pinned checkpoint"
    )


def test_an_inserted_key_that_re_signs_the_checkpoints_is_caught(stopped: Kontext) -> None:
    last = newest(stopped)
    private, kid, jwk = attacker_key()
    with db(stopped) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_checkpoints_no_delete")
        rechain(conn, 4, {"forged": True})
        conn.execute("DELETE FROM audit_checkpoints")
        conn.execute(
            "INSERT INTO signing_keys (kid, public_jwk, storage, created_at) VALUES (?, ?, ?, ?)",
            (kid, json.dumps(jwk), "file:x", time.time()),
        )
        digest = conn.execute("SELECT hash FROM audit_events WHERE id = ?", (last,)).fetchone()[0]
        claims = {"event_id": last, "event_hash": digest, "kind": "checkpoint", "iat": 1}
        headers = {"kid": kid, "typ": "kontext-checkpoint+jwt"}
        token = jwt.encode(claims, private, algorithm="ES256", headers=headers)
        cp = conn.execute(
            "INSERT INTO audit_checkpoints (event_id, event_hash, ts, kind, kid, jws) "
            "VALUES (?, ?, ?, 'checkpoint', ?, ?)",
            (last, digest, time.time(), kid, token),
        ).lastrowid
    err = broken_at(stopped)
    assert err.startswith(
        f"kontext: audit log broken at event {last}: checkpoint {cp} is signed by key {kid}, "
        "which is not a pinned key"
    )


def test_the_real_kid_with_an_attacker_jwk_is_caught(stopped: Kontext) -> None:
    """Swapping the public key behind the genuine kid: the pinned JWK is what counts."""
    private, _, jwk = attacker_key()
    with db(stopped) as conn:
        conn.execute("DROP TRIGGER audit_checkpoints_no_update")
        kid, cp, event_id, digest = conn.execute(
            "SELECT kid, id, event_id, event_hash FROM audit_checkpoints ORDER BY id LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE signing_keys SET public_jwk = ? WHERE kid = ?", (json.dumps(jwk), kid))
        claims = {"event_id": event_id, "event_hash": digest, "kind": "checkpoint", "iat": 1}
        headers = {"kid": kid, "typ": "kontext-checkpoint+jwt"}
        token = jwt.encode(claims, private, algorithm="ES256", headers=headers)
        conn.execute("UPDATE audit_checkpoints SET jws = ? WHERE id = ?", (token, cp))
    err = broken_at(stopped)
    assert err.startswith(f"kontext: audit log broken at event {event_id}: checkpoint {cp} is ")
    assert "is forged" in err


def test_a_whole_replaced_database_is_caught(stopped: Kontext) -> None:
    other = Kontext(short_home())
    try:
        name = other.agent("github:pulls:read")
        for _ in range(6):  # a longer log than the one it replaces
            other.ok("exec", "--agent", name, "--", "true")
        other.stop()
        for suffix in ("", "-wal", "-shm"):
            victim = f"{stopped.database}{suffix}"
            if os.path.exists(victim):
                os.unlink(victim)
        shutil.copy(other.database, stopped.database)
    finally:
        shutil.rmtree(other.home, ignore_errors=True)
    err = broken_at(stopped)
    assert "which is not a pinned key" in err


def test_an_empty_database_in_place_of_the_log_is_caught(stopped: Kontext) -> None:
    last = newest(stopped)
    cut_from(stopped, 1)
    err = broken_at(stopped)
    assert err.startswith("kontext: audit log broken at event 1: is missing: the pinned ")
    assert f"the pinned checkpoint names event {last}" in err


def test_a_removed_anchor_is_not_intact(stopped: Kontext) -> None:
    (stopped.home / "data" / "secrets" / "audit-anchor").unlink()
    err = broken_at(stopped)
    assert "no trust anchor is pinned in file:" in err


def test_a_damaged_anchor_is_not_intact(stopped: Kontext) -> None:
    (stopped.home / "data" / "secrets" / "audit-anchor").write_text('{"version": 1}')
    assert "the pinned trust anchor is damaged" in broken_at(stopped)


def test_a_log_older_than_anchors_is_pinned_once_on_first_use(stopped: Kontext) -> None:
    """An upgrade: checkpoints in the database, no anchor yet. The next start trusts the
    log as it stands, says so in the audit log, and verify says so too."""
    (stopped.home / "data" / "secrets" / "audit-anchor").unlink()
    last = newest(stopped)
    stopped.start()
    pins = [e for e in stopped.audit() if e["event"] == "audit.anchor_pinned"]
    [pinned] = [e for e in pins if e["first_use"]]
    assert pinned["event_id"] == last and pinned["kids"]
    verified = stopped.ok("audit", "verify")
    assert "intact" in verified.stdout
    assert "pinned on first use" in verified.stderr


def test_unsigned_events_fail_once_older_than_the_interval(fresh_kx: Kontext) -> None:
    """SIGKILL leaves the last events unsigned: verify names them and, once they are older
    than the checkpoint interval, fails (libfaketime moves only the verifier's clock)."""
    if not os.path.exists(LIBFAKETIME):
        pytest.skip("libfaketime is not installed (Debian: faketime)")
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    os.kill(fresh_kx.daemon_pid, signal.SIGKILL)
    assert wait_until(lambda: not fresh_kx.socket.exists() or _dead(fresh_kx), timeout=10)
    now = fresh_kx.ok("audit", "verify")
    assert "intact" in now.stdout and "are not signed yet" in now.stderr
    later = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "+10m", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    err = broken_at(fresh_kx, env=later)
    assert "no checkpoint covers events after" in err and "older than the 5m" in err


def _dead(k: Kontext) -> bool:
    try:
        os.kill(k.daemon_pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_daemon_signs_within_the_interval(fresh_kx: Kontext) -> None:
    (fresh_kx.home / "config").mkdir(parents=True)
    (fresh_kx.home / "config" / "config.toml").write_text('[audit]\ncheckpoint_interval = "10s"\n')
    fresh_kx.agent("github:pulls:read", consent=False)
    last = newest(fresh_kx)

    def signed() -> bool:
        row = db(fresh_kx).execute("SELECT MAX(event_id) FROM audit_checkpoints").fetchone()
        return bool(row[0] and row[0] >= last)

    assert wait_until(signed, timeout=60, interval=0.5)
    pin = json.loads((fresh_kx.home / "data" / "secrets" / "audit-anchor").read_text())
    assert pin["checkpoint"]["event_id"] >= last


def test_a_key_not_named_by_its_thumbprint_is_accepted_and_reported(stopped: Kontext) -> None:
    """A log whose key an older kontext named otherwise: renamed everywhere (rows,
    checkpoint headers re-signed with the real key, the secret), then started without an
    anchor. It is pinned on first use, verifies, and verify says the id is not a thumbprint."""
    from cryptography.hazmat.primitives import serialization

    secrets = stopped.home / "data" / "secrets"
    conn = db(stopped)
    [old] = [r[0] for r in conn.execute("SELECT kid FROM signing_keys WHERE alg = 'ES256'")]
    new = "legacy-key-1"
    pem = (secrets / f"signing-key-{old}").read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    conn.execute("DROP TRIGGER audit_checkpoints_no_update")
    for cp, event_id, digest, kind in conn.execute(
        "SELECT id, event_id, event_hash, kind FROM audit_checkpoints"
    ).fetchall():
        claims = {"event_id": event_id, "event_hash": digest, "kind": kind, "iat": 1}
        headers = {"kid": new, "typ": "kontext-checkpoint+jwt"}
        token = jwt.encode(claims, private, algorithm="ES256", headers=headers)  # type: ignore[arg-type]
        conn.execute("UPDATE audit_checkpoints SET kid = ?, jws = ? WHERE id = ?", (new, token, cp))
    conn.execute("UPDATE signing_keys SET kid = ? WHERE kid = ?", (new, old))
    conn.execute("UPDATE credentials SET kid = ? WHERE kid = ?", (new, old))
    conn.close()
    (secrets / f"signing-key-{old}").rename(secrets / f"signing-key-{new}")
    (secrets / "audit-anchor").unlink()
    stopped.start()
    stopped.stop()
    verified = stopped.ok("audit", "verify")
    assert "intact" in verified.stdout and f"key {new}" in verified.stdout
    assert f"key {new} is not named by its RFC 7638 thumbprint" in verified.stderr


def test_a_daemon_started_on_a_cut_log_says_so_and_keeps_the_pin(stopped: Kontext) -> None:
    """The next checkpoint must not paper over the cut: the pin stays where it was."""
    last = newest(stopped)
    cut_from(stopped, last - 2)
    started = stopped.ok("daemon", "start")
    assert f"the audit log lost its pinned event {last} (truncated or replaced)" in started.stderr
    stopped.agent("github:pulls:read", consent=False)
    stopped.ok("audit", "checkpoint")
    stopped.stop()
    pin = json.loads((stopped.home / "data" / "secrets" / "audit-anchor").read_text())
    assert pin["checkpoint"]["event_id"] == last
    assert "differs from the pinned checkpoint" in broken_at(stopped)


def append_forged(k: Kontext, ts: float) -> int:
    """Append one well-chained event without the key, as someone with the disk could."""
    with db(k) as conn:
        row_id, digest = conn.execute(
            "SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1"
        ).fetchone()
        record = {"event": "agent.created", "agent": {"id": "agent:ghost"}, "id": row_id + 1}
        record |= {"ts": ts, "prev_hash": digest}
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        conn.execute(
            "INSERT INTO audit_events (id, ts, event, agent, body, prev_hash, hash) "
            "VALUES (?, ?, 'agent.created', 'agent:ghost', ?, ?, ?)",
            (row_id + 1, ts, text, digest, hashlib.sha256(text.encode()).hexdigest()),
        )
    return int(row_id) + 1


def test_events_added_without_the_key_are_named_then_refused(stopped: Kontext) -> None:
    """The window SECURITY.md admits: an unsigned event dated now is named, not refused,
    until the interval passes; one dated later than now is refused at once."""
    ghost = append_forged(stopped, time.time())
    recent = stopped.ok("audit", "verify")
    assert "intact" in recent.stdout
    assert f"events {ghost}-{ghost} are not signed yet" in recent.stderr
    ahead = append_forged(stopped, time.time() + 86400)
    err = broken_at(stopped)
    assert f"no checkpoint covers events after {ghost - 1}: events {ghost}-{ahead} claim " in err
    assert "after now (a clock set back, or events written without the key)" in err


def test_a_rotated_key_is_pinned_as_it_signs_and_the_old_one_stays_trusted(
    fresh_kx: Kontext,
) -> None:
    """Rotation (issue 19.20's published-ahead keys): the new ES256 key is pinned when it
    first signs a checkpoint; the retired key's checkpoints still verify, its private half
    gone; a key that was only ever published (never signed) needs no pin."""
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    fresh_kx.ok("audit", "checkpoint")
    fresh_kx.ok("keys", "rotate", "--now")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    fresh_kx.stop()
    signers = {r[0] for r in db(fresh_kx).execute("SELECT kid FROM audit_checkpoints")}
    assert len(signers) == 2
    pin = json.loads((fresh_kx.home / "data" / "secrets" / "audit-anchor").read_text())
    assert signers <= set(pin["keys"])
    out = fresh_kx.ok("audit", "verify").stdout
    assert "intact" in out and all(kid in out for kid in signers)
