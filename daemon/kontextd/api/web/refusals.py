"""Refused requests in the audit log, without letting anyone flood it.

Any web page and any local user can send requests that are refused before any
token is checked (a wrong Host, a foreign Origin, a gateway call without a valid
token). Each kind is recorded at most once per ``INTERVAL`` (with how many were
left out since), and all kinds together at most ``BURST`` times per interval, so
an unauthenticated caller grows the audit log by a few rows a minute at most.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kontextd.api.web.messages import Request
from kontextd.store.db import Store, StoreError

log = logging.getLogger("kontextd.loopback")

INTERVAL = 60.0
BURST = 10  # events of all kinds per interval


class RefusalLog:
    """Rate-limited audit events for refusals; keys are a small fixed vocabulary."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._last: dict[str, tuple[float, int]] = {}
        self._window = (0.0, 0)  # (start, events written in it)

    def note(self, request: Request, reason: str) -> None:
        """``http.refused`` for a request refused before routing (Host, Origin, …)."""
        fields = {
            "reason": reason,
            "method": request.method[:16],
            "path": request.path[:100],
        }
        self.record("http.refused", reason, fields)

    def record(self, event: str, key: str, fields: dict[str, Any], *, shared: bool = True) -> bool:
        """Append ``event`` unless one with ``key`` was written within ``INTERVAL``;
        True when written. ``not_recorded_since_last`` counts the ones left out.
        ``shared=False``: not counted in the ``BURST`` of anonymous refusals (for a
        refusal that names who was refused, whose keys the caller cannot multiply)."""
        now = time.monotonic()
        slot = f"{event}|{key}"
        last, skipped = self._last.get(slot, (-INTERVAL, 0))
        start, written = self._window
        if now - start >= INTERVAL:
            start, written = now, 0
        if now - last < INTERVAL or (shared and written >= BURST):
            self._last[slot] = (last, skipped + 1)
            return False
        if len(self._last) > 256:  # keys are a fixed vocabulary; this is only a backstop
            self._last.clear()
        self._last[slot] = (now, 0)
        self._window = (start, written + int(shared))
        try:
            with self._store.transaction() as tx:
                tx.append_event({"event": event, **fields, "not_recorded_since_last": skipped})
        except StoreError:  # the refusal stands; the log says why it is not in the audit
            log.warning("could not audit a refused request: the database cannot be written")
        return True
