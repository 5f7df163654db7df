"""The audit hash chain.

Each event stores the SHA-256 of the previous event's canonical JSON, so an
edited, deleted or reordered row breaks every link after it. Canonical JSON is
sorted keys, no insignificant whitespace, UTF-8 — the same bytes on every run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kontextd.jsonenc import CANONICAL

GENESIS = "0" * 64
# ``hashlib.sha256()`` looks the algorithm up in OpenSSL on every call; a copy of an
# empty one does not (same digest).
_EMPTY_SHA256 = hashlib.sha256()


def canonical(event: dict[str, Any]) -> bytes:
    """The bytes an event is hashed over."""
    return CANONICAL.encode(event).encode()


def digest(body: bytes) -> str:
    """The chain hash of an event's canonical bytes (which carry ``prev_hash``)."""
    h = _EMPTY_SHA256.copy()
    h.update(body)
    return h.hexdigest()


def link(prev_hash: str, event: dict[str, Any]) -> str:
    """The hash of ``event``, which already carries ``prev_hash`` inside it."""
    assert event.get("prev_hash") == prev_hash
    return digest(canonical(event))
