"""``kontext audit verify`` on a longer log: its quick per-row check gives the full check's verdict.

The walk checks most rows with one hash and one C-level parse and hands any row
that does not pass to the full check, which names what is wrong; these tamper
with a row in the middle of 3000 and expect the message and event the full check
gives (see test_audit_verify for the kinds of tampering themselves).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator

import pytest
from conftest import Kontext

BROKEN = 10
ROW = 1500


@pytest.fixture
def long_log(fresh_kx: Kontext) -> Iterator[Kontext]:
    """3000 events and signed checkpoints over the newest; the daemon stopped."""
    from kontextd.store.db import Store

    fresh_kx.start()
    fresh_kx.stop()
    store = Store(str(fresh_kx.database))
    with store.transaction() as tx:
        for i in range(3000):
            tx.append_event({"event": "credential.issued", "agent": {"id": f"agent:a{i % 7}"}})
    store.close()
    fresh_kx.start()
    fresh_kx.ok("audit", "checkpoint")
    fresh_kx.stop()
    yield fresh_kx


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tamper(k: Kontext, change: Callable[[str, str], tuple[str, str, str]]) -> None:
    """Set row ROW's (body, prev_hash, hash) to ``change(body, prev_hash)``."""
    with sqlite3.connect(k.database, isolation_level=None) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        body, prev = conn.execute(
            "SELECT body, prev_hash FROM audit_events WHERE id = ?", (ROW,)
        ).fetchone()
        conn.execute(
            "UPDATE audit_events SET body = ?, prev_hash = ?, hash = ? WHERE id = ?",
            (*change(body, prev), ROW),
        )


def test_a_clean_long_log_verifies(long_log: Kontext) -> None:
    # How many checkpoints the daemon signed is its business (every 1000th event,
    # catching up on the 3000 appended while it was stopped; at each stop; on
    # `audit checkpoint`) and depends on when its housekeeping ran: count them.
    with sqlite3.connect(long_log.database) as conn:
        count = conn.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
        signed = conn.execute(
            "SELECT COUNT(*) FROM audit_checkpoints WHERE kind = 'checkpoint'"
        ).fetchone()[0]
    out = long_log.ok("audit", "verify").stdout.splitlines()[0]
    assert signed >= 2  # at least the test's own and the stop's
    assert out == f"verified {count} events (events 1-{count}) and {signed} checkpoints: intact"


def _id(body: str, new: int) -> str:
    return body.replace(f'"id":{ROW},', f'"id":{new},')


def _chain(body: str, prev: str) -> tuple[str, str, str]:
    forged = body.replace(prev, "f" * 64)
    return forged, "f" * 64, sha(forged)


CASES = [
    (lambda b, p: (b, p, "0" * 64), ROW, "its content was edited"),
    (lambda b, p: ("not json", p, sha("not json")), ROW, "its body is not JSON"),
    (lambda b, p: ('["x"]', p, sha('["x"]')), ROW, "was moved"),
    (lambda b, p: (_id(b, 7), p, sha(_id(b, 7))), ROW, "was moved"),
    (lambda b, p: (b, "e" * 64, sha(b)), ROW, "its prev_hash column differs from its body"),
    (_chain, ROW, f"does not chain to event {ROW - 1}"),
    # Valid JSON after a space: the full check accepts the row (json.loads would), so
    # the first broken link is the next row, which chained to the old hash.
    (lambda b, p: (" " + b, p, sha(" " + b)), ROW + 1, f"does not chain to event {ROW}"),
]


@pytest.mark.parametrize(("change", "at", "words"), CASES, ids=[c[2] for c in CASES])
def test_tampering_is_named_at_the_first_broken_event(
    long_log: Kontext, change: Callable[[str, str], tuple[str, str, str]], at: int, words: str
) -> None:
    tamper(long_log, change)
    proc = long_log.run("audit", "verify")
    assert proc.returncode == BROKEN, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"kontext: audit log broken at event {at}: {words}")
