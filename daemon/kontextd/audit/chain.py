"""The audit hash chain.

Each event stores the SHA-256 of the previous event's canonical JSON, so an
edited, deleted or reordered row breaks every link after it. Canonical JSON is
sorted keys, no insignificant whitespace, UTF-8 — the same bytes on every run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64


def canonical(event: dict[str, Any]) -> bytes:
    """The bytes an event is hashed over."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(body: bytes) -> str:
    """The chain hash of an event's canonical bytes (which carry ``prev_hash``)."""
    return hashlib.sha256(body).hexdigest()


def link(prev_hash: str, event: dict[str, Any]) -> str:
    """The hash of ``event``, which already carries ``prev_hash`` inside it."""
    assert event.get("prev_hash") == prev_hash
    return digest(canonical(event))
