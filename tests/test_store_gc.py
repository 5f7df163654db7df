"""Live credentials cost the garbage collector nothing (``credential_sql._live``).

The store keeps every live credential it inserted in memory, to answer
introspection, the gateway and exchanges without a query. At a few thousand
``/token`` exchanges a second (60 s tokens) that is hundreds of thousands of
entries; held as objects the collector tracks, each full collection walked them
all — 25-200 ms pauses on the loopback loop, several a second, which a user sees
as the p99 of every request. Held as plain tuples of strings and numbers, they
are not tracked, so what the collector walks does not grow with them.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

from kontextd.store.db import Store
from kontextd.store.rows import EXCHANGE, CredentialRow

COUNT = 2000


def _row(n: int, now: float) -> CredentialRow:
    return CredentialRow(
        jti=f"jti-{n:06d}",
        agent="pr-reviewer",
        user="alice",
        scopes=("github:pulls:read",),
        audience=("github",),
        target="acme/backend",
        kid="k1",
        issued_at=now,
        expires_at=now + 60,
        status="live",
        kind=EXCHANGE,
        client_id="agent:pr-reviewer",
        parent="jti-parent",
    )


def test_live_credentials_add_nothing_for_the_collector_to_walk(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "kontext.db"))
    try:
        with store.transaction() as tx:
            tx.insert_agent("pr-reviewer", "pr-reviewer", 3600, ["github:pulls:read"])
            tx.insert_key("k1", {"kty": "EC"}, "file")
        now = time.time()
        gc.collect()
        tracked = len(gc.get_objects())
        with store.transaction() as tx:
            for n in range(COUNT):
                tx.insert_credential(_row(n, now))
        gc.collect()
        grown = len(gc.get_objects()) - tracked
        assert grown < COUNT // 20, f"{grown} more objects tracked for {COUNT} live credentials"
        # Still answered from memory, as the rows they were.
        assert store.credential("jti-000007") == _row(7, now)
        assert store.credential_status("jti-000007") == ("live", now + 60)
        store.set_child("jti-000007", 4242, "123")
        assert store.credential("jti-000007") == _row(7, now)._replace(
            child_pid=4242, child_start="123"
        )
    finally:
        store.close()
