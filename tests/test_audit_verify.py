"""The audit trail as evidence: tampering with the SQLite file is caught at the right event."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from conftest import Kontext, wait_until
from cryptography.hazmat.primitives.asymmetric import ec

BROKEN = 10


@pytest.fixture
def log(fresh_kx: Kontext) -> Iterator[Kontext]:
    """A home with a dozen events and a signed checkpoint; the daemon stopped."""
    name = fresh_kx.agent("github:pulls:read")
    for _ in range(4):
        fresh_kx.ok("exec", "--agent", name, "--", "true")
    fresh_kx.ok("audit", "checkpoint")
    fresh_kx.stop()
    yield fresh_kx


def db(k: Kontext) -> sqlite3.Connection:
    return sqlite3.connect(k.database, isolation_level=None)


def broken_at(k: Kontext, *args: str, env: dict[str, str] | None = None) -> str:
    proc = k.run("audit", "verify", *args, env=env)
    assert proc.returncode == BROKEN, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1
    return proc.stderr


def test_clean_log_verifies_and_counts(log: Kontext) -> None:
    out = log.ok("audit", "verify").stdout.splitlines()
    count = db(log).execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
    signed = db(log).execute("SELECT COUNT(*) FROM audit_checkpoints").fetchone()[0]
    assert signed >= 2  # `audit checkpoint`, and the one every stop signs
    assert out[0] == f"verified {count} events (events 1-{count}) and {signed} checkpoints: intact"
    assert out[1].startswith("anchor: checkpoint at event ") and out[1].endswith("/data/secrets")


def test_edited_field_is_caught_at_that_event(log: Kontext) -> None:
    with db(log) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        body = conn.execute("SELECT body FROM audit_events WHERE id = 5").fetchone()[0]
        conn.execute(
            "UPDATE audit_events SET body = ? WHERE id = 5", (body.replace('"ts":', '"ts":1', 1),)
        )
    err = broken_at(log)
    assert err.startswith("kontext: audit log broken at event 5: its content was edited")


def test_rewritten_chain_is_caught_by_the_signed_checkpoint(log: Kontext) -> None:
    """An attacker who re-hashes every later event still cannot re-sign the checkpoint."""
    import hashlib

    conn = db(log)
    conn.execute("DROP TRIGGER audit_no_update")
    rows = conn.execute("SELECT id, body FROM audit_events ORDER BY id").fetchall()
    prev = conn.execute("SELECT hash FROM audit_events WHERE id = 3").fetchone()[0]
    for row_id, body in rows[3:]:
        record = json.loads(body)
        record["prev_hash"] = prev
        if row_id == 4:
            record["forged"] = True
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        prev = hashlib.sha256(text.encode()).hexdigest()
        conn.execute(
            "UPDATE audit_events SET body = ?, prev_hash = ?, hash = ? WHERE id = ?",
            (text, record["prev_hash"], prev, row_id),
        )
    signed = conn.execute("SELECT event_id FROM audit_checkpoints").fetchone()[0]
    err = broken_at(log)
    assert err.startswith(
        f"kontext: audit log broken at event {signed}: checkpoint 1 signed another"
    )


def test_deleted_row_is_caught(log: Kontext) -> None:
    with db(log) as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DELETE FROM audit_events WHERE id = 6")
    assert broken_at(log).startswith("kontext: audit log broken at event 6: is missing")


def test_deleted_tail_is_caught_by_the_checkpoint(log: Kontext) -> None:
    with db(log) as conn:
        last = conn.execute("SELECT MAX(id) FROM audit_events").fetchone()[0]
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DELETE FROM audit_events WHERE id >= ?", (last - 1,))
    assert f"broken at event {last - 1}: is missing" in broken_at(log)


def test_swapped_rows_are_caught_at_the_first(log: Kontext) -> None:
    with db(log) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        a, b = (
            conn.execute(
                "SELECT body, prev_hash, hash FROM audit_events WHERE id = ?", (i,)
            ).fetchone()
            for i in (7, 8)
        )
        for row_id, values in ((7, b), (8, a)):
            conn.execute(
                "UPDATE audit_events SET body = ?, prev_hash = ?, hash = ? WHERE id = ?",
                (*values, row_id),
            )
    assert broken_at(log).startswith("kontext: audit log broken at event 7: was moved")


def test_forged_checkpoint_is_caught(log: Kontext) -> None:
    conn = db(log)
    kid = conn.execute("SELECT kid FROM audit_checkpoints").fetchone()[0]
    other = ec.generate_private_key(ec.SECP256R1())
    claims = {"event_id": 3, "event_hash": "0" * 64, "kind": "checkpoint", "iat": 1}
    forged = jwt.encode(
        claims, other, algorithm="ES256", headers={"kid": kid, "typ": "kontext-checkpoint+jwt"}
    )
    row = conn.execute(
        "INSERT INTO audit_checkpoints (event_id, event_hash, ts, kind, kid, jws) "
        "VALUES (3, ?, 1, 'checkpoint', ?, ?)",
        ("0" * 64, kid, forged),
    ).lastrowid
    err = broken_at(log)
    assert err.startswith(f"kontext: audit log broken at event 3: checkpoint {row} is forged")


def test_altered_checkpoint_fields_are_caught(log: Kontext) -> None:
    with db(log) as conn:
        conn.execute("DROP TRIGGER audit_checkpoints_no_update")
        conn.execute("UPDATE audit_checkpoints SET event_id = 2")
    assert "checkpoint 1 was altered after signing" in broken_at(log)


def test_export_verifies_on_its_own_and_catches_edits(log: Kontext, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    log.ok("audit", "export", "--since", "1h", "--format", "jsonl", "-o", str(out))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    events = [x for x in lines if "kontext_record" not in x]
    assert events and all("event" in e and "hash" in e and "ts" in e for e in events)
    assert log.ok("audit", "verify", "--file", str(out)).stdout.startswith(
        f"verified {len(events)} events"
    )
    text = out.read_text().replace('"credential.issued"', '"credential.denied"', 1)
    out.write_text(text)
    assert "its content was edited" in broken_at(log, "--file", str(out))


def test_prune_leaves_a_signed_anchor_and_the_rest_verifies(fresh_kx: Kontext) -> None:
    (fresh_kx.home / "config").mkdir(parents=True)
    (fresh_kx.home / "config" / "config.toml").write_text('[audit]\nprune_min_age = "0s"\n')
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    time.sleep(0.05)
    cutoff = dt.datetime.now().isoformat()
    time.sleep(0.05)
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    before = fresh_kx.audit()
    old = [e for e in before if e["ts"] < dt.datetime.fromisoformat(cutoff).timestamp()]
    out = fresh_kx.ok("audit", "prune", "--before", cutoff).stdout
    assert out.startswith(f"pruned {len(old)} events through event {old[-1]['id']}; signed anchor")
    after = fresh_kx.audit()
    assert after[0]["id"] == old[-1]["id"] + 1 and after[-1]["event"] == "audit.pruned"
    assert "intact" in fresh_kx.ok("audit", "verify").stdout
    fresh_kx.stop()
    with db(fresh_kx) as conn:  # without its anchor the pruned log no longer verifies
        conn.execute("DROP TRIGGER audit_checkpoints_no_delete")
        conn.execute("DELETE FROM audit_checkpoints WHERE kind = 'anchor'")
    assert "no signed anchor" in broken_at(fresh_kx)


def test_checkpoints_every_n_events(fresh_kx: Kontext) -> None:
    (fresh_kx.home / "config").mkdir(parents=True)
    (fresh_kx.home / "config" / "config.toml").write_text("[audit]\ncheckpoint_every = 3\n")
    name = fresh_kx.agent("github:pulls:read")
    for _ in range(3):
        fresh_kx.ok("exec", "--agent", name, "--", "true")

    def checkpoints() -> int:
        row = db(fresh_kx).execute("SELECT COUNT(*) FROM audit_checkpoints").fetchone()
        return int(row[0])

    # Events 3, 6 and 9 are checkpointed (daemon.started, key.created, agent.created, 3 x 2).
    assert wait_until(lambda: checkpoints() >= 3, timeout=3)
    assert "intact" in fresh_kx.ok("audit", "verify").stdout


def test_tail_filters(fresh_kx: Kontext) -> None:
    a = fresh_kx.agent("github:pulls:read")
    fresh_kx.run("exec", "--agent", a, "--scope", "slack:chat:write", "--", "true")
    fresh_kx.ok("exec", "--agent", a, "--", "true")
    denied = fresh_kx.ok("audit", "tail", "--event", "credential.denied", "--json").stdout
    assert [json.loads(x)["event"] for x in denied.splitlines()] == ["credential.denied"]
    user = json.loads(denied)["user"]["id"]
    mine = fresh_kx.ok("audit", "tail", "--user", user, "--since", "1h", "--json").stdout
    assert len(mine.splitlines()) >= 3
    assert fresh_kx.ok("audit", "tail", "--user", "nobody@example.com").stdout == ""
    assert fresh_kx.ok("audit", "tail", "--until", "2000-01-01").stdout == ""
    proc = fresh_kx.run("audit", "tail", "--since", "last tuesday")
    assert proc.returncode == 2 and proc.stderr.startswith("kontext: invalid time 'last tuesday'")
