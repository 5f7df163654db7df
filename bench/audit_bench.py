"""Audit-trail benchmark: append rate, ``audit tail -n 100`` and ``audit verify`` at 1M events.

Standalone (not a timed test)::

    python bench/audit_bench.py [--events 1000000] [--batch 10000]

Events are appended through the store's own ``append_event`` (the daemon's code
path: canonical JSON, SHA-256 link, INSERT) in transactions of ``--batch``
events, with a signed checkpoint every 1000 events as the daemon would make;
then a real daemon is started on that home and the CLI is timed as a user
would run it. Results go to stdout; record them in bench/AUDIT_RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kontext.common.paths import resolve
from kontextd.audit import checkpoint
from kontextd.secrets import SecretStore
from kontextd.store import audit_sql
from kontextd.store.db import Store
from kontextd.tokens.keys import KeyRing

KONTEXT = str(Path(sys.executable).parent / "kontext")


def event(i: int) -> dict[str, object]:
    """A realistic credential event (the commonest kind)."""
    return {
        "event": "credential.issued" if i % 2 else "credential.revoked",
        "agent": {"id": f"agent:bench-{i % 50}", "name": f"Bench {i % 50}"},
        "user": {"id": "user:bench@example.com"},
        "integration": "github",
        "scopes": ["github:pulls:read"],
        "target": "acme-corp/backend",
        "jti": f"{i:022d}",
        "policy_evaluation": {
            "org_policy": "allow",
            "user_consent": "allow",
            "agent_permissions": "allow",
        },
        "policy_ids": {"org_policy": ["baseline"]},
    }


def fill(total: int, batch: int, every: int) -> float:
    """Append ``total`` events; returns the append rate (events per second)."""
    paths = resolve()
    store = Store(paths.database)
    keys = KeyRing(store, SecretStore(paths.secrets, paths.data, "allow"))
    key = keys.active()
    start = time.perf_counter()
    done = store.last_event_id()
    while done < total:
        with store.transaction() as tx:
            for _ in range(min(batch, total - done)):
                done = tx.append_event(event(done))["id"]
                if done % every == 0:
                    _checkpoint(store, key, done)
    elapsed = time.perf_counter() - start
    store.close()
    return total / elapsed


def _checkpoint(store: Store, key: object, event_id: int) -> None:
    with store.connection() as conn:
        found = audit_sql.event_at(conn, event_id)
        assert found is not None
        claims = {"event_id": event_id, "event_hash": found[1], "kind": "checkpoint", "iat": 0}
        jws = checkpoint.sign(key.private, key.kid, claims)  # type: ignore[attr-defined]
        row = audit_sql.CheckpointRow(
            0, event_id, found[1], time.time(), "checkpoint", key.kid, jws
        )  # type: ignore[attr-defined]
        audit_sql.insert_checkpoint(conn, row)


def timed(*args: str, repeat: int = 1) -> tuple[float, str]:
    """Best wall-clock seconds of ``kontext ARGS`` over ``repeat`` runs."""
    best, out = float("inf"), ""
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run([KONTEXT, *args], capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - start)
        out = proc.stdout
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="kab-", dir="/tmp")
    os.environ["KONTEXT_HOME"] = home
    try:
        rate = fill(args.events, args.batch, 1000)
        size = os.path.getsize(resolve().database) / 1e6
        print(
            f"append: {args.events} events at {rate:,.0f} events/s "
            f"(batches of {args.batch}); database {size:,.0f} MB"
        )
        subprocess.run([KONTEXT, "daemon", "start"], capture_output=True, check=True)
        tail, _ = timed("audit", "tail", "-n", "100", repeat=5)
        print(f"audit tail -n 100: {tail * 1000:.0f} ms (best of 5, CLI process included)")
        filtered, _ = timed("audit", "tail", "-n", "100", "--event", "credential.issued", repeat=5)
        print(f"audit tail -n 100 --event credential.issued: {filtered * 1000:.0f} ms")
        verify, out = timed("audit", "verify")
        print(f"audit verify: {verify:.1f} s ({out.strip()})")
        print(f"verify rate: {args.events / verify:,.0f} events/s")
    finally:
        subprocess.run([KONTEXT, "daemon", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
