"""Failed-attempt throttling for the issuer's guessable inputs.

Codes, request URIs, CSRF tokens and the client secret are 256-bit random, so
guessing them is hopeless already; this is defence in depth (RFC 6749 §10.10,
OAuth 2.0 Security BCP §4.16). Every caller is 127.0.0.1, so the key is the
endpoint: after ``LIMIT`` failures within ``WINDOW`` seconds the endpoint answers
429 until the oldest failure leaves the window. A same-uid process could use this
to slow the user's own logins for a few seconds; it can do far worse already.
"""

from __future__ import annotations

import collections
import threading
import time

LIMIT = 20
WINDOW = 10.0

_failures: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
_lock = threading.Lock()


def _trim(stamps: collections.deque[float], now: float) -> None:
    while stamps and stamps[0] <= now - WINDOW:
        stamps.popleft()


def retry_after(endpoint: str) -> int:
    """Seconds until ``endpoint`` accepts attempts again; 0 when it does now."""
    now = time.monotonic()
    with _lock:
        stamps = _failures[endpoint]
        _trim(stamps, now)
        if len(stamps) < LIMIT:
            return 0
        return max(1, int(stamps[0] + WINDOW - now + 0.999))


def failed(endpoint: str) -> None:
    """Count one failed attempt (a wrong code, secret, CSRF token, …) at ``endpoint``."""
    now = time.monotonic()
    with _lock:
        stamps = _failures[endpoint]
        _trim(stamps, now)
        stamps.append(now)
