"""Failed-attempt throttling for the issuer's guessable inputs, per caller.

Codes, request URIs, CSRF tokens and the client secret are 256-bit random, so
guessing them is hopeless already; this is defence in depth (RFC 6749 §10.10,
OAuth 2.0 Security BCP §4.16). After ``LIMIT`` failures within ``WINDOW`` seconds
an (endpoint, caller) pair answers 429 until the oldest failure leaves the window.

The caller is the OS user at the other end of the loopback connection (its peer
uid), for a browser whether the request came from another site
(``Sec-Fetch-Site``), and whether the connection is held inside an agent's
``kontext exec`` tree (which agent): another OS user, a web page or an agent
failing on purpose fills only its own bucket, so none of them can lock the
user's CLI and pages, or the other agents' exchanges, out. A lock-out is
reported for the audit (``failed`` returns True) at most once per
``REPORT_INTERVAL`` per caller and endpoint: a caller kept at the limit locks
itself out again each time a failure leaves the window (twice a second), and
another OS user doing so on purpose added 200 ``oauth.throttled`` rows a minute.

Which tree holds a connection is a look through ``/proc`` (``Trees.holder``), so
it is asked only where it decides something: when a request has failed, and
while some agent's bucket holds failures; at most once per connection.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

LIMIT = 20
WINDOW = 10.0
MAX_CALLERS = 1024  # buckets kept; a backstop, callers are a handful of uids
REPORT_INTERVAL = 60.0  # seconds between two reported lock-outs of one bucket

_failures: dict[tuple[str, str], collections.deque[float]] = {}
_agent_keys: set[tuple[str, str]] = set()  # the buckets of agents (a subset of _failures')
_reported: dict[tuple[str, str], float] = {}  # when each bucket's lock-out was last reported
_lock = threading.Lock()


def caller(uid: int | None, fetch_site: str | None) -> str:
    """The throttle's key for a request: its peer uid, and whether a page on another
    site sent it (browsers say so in ``Sec-Fetch-Site``)."""
    who = f"uid:{uid}" if uid is not None else "uid:unknown"
    return f"{who}/web" if fetch_site in ("cross-site", "same-site") else who


def who(trees: Any, request: Any, endpoint: str, *, failing: bool = False) -> str:
    """The bucket of ``request`` at ``endpoint``: ``caller``'s key, and the agent whose
    exec tree holds the connection when that can matter (``failing``, or some agent's
    bucket at ``endpoint`` holds failures). ``trees`` is the daemon's ``Trees``."""
    key = caller(request.peer_uid, request.headers.get("Sec-Fetch-Site"))
    if not failing and not _agents_failing(endpoint):
        return key
    peer = request.peer
    if peer is None or peer.inode is None:
        return key  # not Linux, or the peer is gone: the uid's bucket
    verdict = peer.verdicts.get("agent", ...)
    if verdict is ...:  # the same cache as the pages' refusal: once per connection
        verdict = peer.verdicts["agent"] = trees.holder(peer.inode)
    return key if verdict is None else f"{key}/agent:{verdict.agent}"


def _agents_failing(endpoint: str) -> bool:
    """Whether some agent's bucket at ``endpoint`` holds failures now. Asked on every
    request, so it looks only at the agents' buckets, and forgets those emptied."""
    now = time.monotonic()
    with _lock:
        if not _agent_keys:
            return False
        for bucket in list(_agent_keys):
            _trim(_failures[bucket], now)
            if _failures[bucket]:
                if bucket[0] == endpoint:
                    return True
            else:
                del _failures[bucket]
                _agent_keys.discard(bucket)
    return False


def _trim(stamps: collections.deque[float], now: float, window: float = WINDOW) -> None:
    while stamps and stamps[0] <= now - window:
        stamps.popleft()


def retry_after(endpoint: str, who: str, *, limit: int = LIMIT, window: float = WINDOW) -> int:
    """Seconds until ``who`` may try ``endpoint`` again; 0 when it may now. ``limit``
    and ``window``: a bucket counted otherwise than failures (``registration``'s)."""
    now = time.monotonic()
    with _lock:
        stamps = _failures.get((endpoint, who))
        if stamps is None:
            return 0
        _trim(stamps, now, window)
        if len(stamps) < limit:
            return 0
        return max(1, int(stamps[0] + window - now + 0.999))


def failed(endpoint: str, who: str, *, limit: int = LIMIT, window: float = WINDOW) -> bool:
    """Count one failed attempt by ``who``; True when this one locked it out and no
    lock-out of this bucket was reported within ``REPORT_INTERVAL`` (audit it)."""
    now = time.monotonic()
    with _lock:
        if len(_failures) > MAX_CALLERS or len(_reported) > MAX_CALLERS:
            _failures.clear()
            _agent_keys.clear()
            _reported.clear()
        key = (endpoint, who)
        stamps = _failures.setdefault(key, collections.deque())
        if "/agent:" in who:
            _agent_keys.add(key)
        _trim(stamps, now, window)
        stamps.append(now)
        if len(stamps) != limit or now - _reported.get(key, -REPORT_INTERVAL) < REPORT_INTERVAL:
            return False
        _reported[key] = now
        return True
