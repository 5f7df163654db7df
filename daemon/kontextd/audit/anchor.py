"""The audit chain's trust anchors, kept outside the database they protect (DESIGN rule 9).

Pinned: the public JWK of every key that signs checkpoints — derived from the
private key as it signs, never read back from the database — and the newest
signed checkpoint (its id, event id and event hash). ``kontext audit verify``
trusts only pinned keys and needs the pinned event in the log with the pinned
hash, so without the private key a rewritten chain, a cut end, a key added to
``signing_keys`` or a whole replaced database all fail verification.

Where: in the secret storage that holds the private key — an OS keyring item
beside it, or (the file fallback) a 0600 file in the same 0700 directory.
Whoever can rewrite the anchor can read the signing key too, so the anchor is
exactly as strong as the signature it pins; SECURITY.md says what that means
for the file fallback.

The pin only moves forward, and only along the chain it already pins: a daemon
that finds its pinned checkpoint missing from the database (a restored backup,
a truncation) freezes the pin, so the evidence is not overwritten by the next
checkpoint.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from kontextd.secrets import SecretStore

NAME = "audit-anchor"
VERSION = 1


class AnchorInvalid(ValueError):
    """The stored anchor is not one this version wrote (damaged or hand-edited)."""


@dataclass(frozen=True)
class PinnedCheckpoint:
    """The newest signed checkpoint: "event ``event_id`` has hash ``event_hash``"."""

    id: int
    event_id: int
    event_hash: str
    kid: str
    kind: str
    ts: float


@dataclass
class Anchor:
    """Trusted public keys by kid, and the newest checkpoint (None before the first)."""

    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    checkpoint: PinnedCheckpoint | None = None
    first_use: float | None = None  # set when the keys were taken from an existing log

    def dumps(self) -> str:
        checkpoint = asdict(self.checkpoint) if self.checkpoint else None
        return json.dumps(
            {"version": VERSION, "keys": self.keys, "checkpoint": checkpoint}
            | {"first_use": self.first_use},
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str) -> Anchor:
        """Parse and check the stored form; raises ``AnchorInvalid``."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise AnchorInvalid("not a version 1 anchor")
            keys = data["keys"]
            if not isinstance(keys, dict) or not all(
                isinstance(k, str) and _is_jwk(v) for k, v in keys.items()
            ):
                raise AnchorInvalid("its keys are not public JWKs")
            raw = data.get("checkpoint")
            checkpoint = None if raw is None else _checkpoint(raw)
            first_use = data.get("first_use")
            if first_use is not None and not isinstance(first_use, int | float):
                raise AnchorInvalid("first_use is not a time")
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, AnchorInvalid):
                raise
            raise AnchorInvalid(f"it does not parse ({type(exc).__name__})") from exc
        return cls(keys=keys, checkpoint=checkpoint, first_use=first_use)


def _is_jwk(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k), str) for k in ("kty", "crv", "x", "y")
    )


def _checkpoint(raw: Any) -> PinnedCheckpoint:
    if not isinstance(raw, dict):
        raise AnchorInvalid("its checkpoint is not an object")
    cp = PinnedCheckpoint(**raw)
    if not (
        isinstance(cp.id, int)
        and isinstance(cp.event_id, int)
        and isinstance(cp.event_hash, str)
        and len(cp.event_hash) == 64
        and isinstance(cp.kid, str)
        and isinstance(cp.ts, int | float)
    ):
        raise AnchorInvalid("its checkpoint has the wrong types")
    return cp


class AnchorStore:
    """Reads and moves the anchor in one ``SecretStore``; thread-safe, cached in memory."""

    def __init__(self, secrets: SecretStore) -> None:
        self._secrets = secrets
        self._lock = threading.Lock()
        self._cached: Anchor | None = None
        self.frozen: str | None = None  # why the checkpoint pin may not move (daemon only)

    @property
    def where(self) -> str:
        """``keyring:<backend>`` or ``file:<dir>``, as ``SecretStore.backend``."""
        return self._secrets.backend

    def load(self) -> Anchor | None:
        """The stored anchor, or None if none was ever pinned here."""
        text = self._secrets.get(NAME)
        if text is None:
            return None
        anchor = Anchor.loads(text)
        with self._lock:
            self._cached = anchor
        return anchor

    def create(self, anchor: Anchor) -> None:
        """Store a first anchor (the daemon's start, when none exists)."""
        with self._lock:
            self._save(anchor)

    def discard(self) -> None:
        """Forget the anchor: the log it pinned is gone and a new one starts, by the
        user's explicit ``--new-database`` (``kontextd.store.presence``)."""
        with self._lock:
            self._secrets.delete(NAME)
            self._cached = None
            self.frozen = None

    def pin_key(self, kid: str, jwk: dict[str, str]) -> bool:
        """Trust ``jwk`` as ``kid`` from now on; True if it was not pinned yet.

        A kid already pinned to another key is never re-pinned (a swapped private
        key would otherwise bless itself): the anchor freezes instead."""
        with self._lock:
            anchor = self._current()
            pinned = anchor.keys.get(kid)
            if pinned == jwk or self.frozen:
                return False
            if pinned is not None:
                self.frozen = f"the signing key {kid} is not the key pinned under that id"
                return False
            self._save(replace(anchor, keys={**anchor.keys, kid: dict(jwk)}))
            return True

    def pin_checkpoint(self, cp: PinnedCheckpoint) -> bool:
        """Move the pin to ``cp`` if it is newer; never while frozen or backwards."""
        with self._lock:
            anchor = self._current()
            old = anchor.checkpoint
            if self.frozen or (old is not None and (cp.event_id, cp.id) <= (old.event_id, old.id)):
                return False
            self._save(replace(anchor, checkpoint=cp))
            return True

    def _current(self) -> Anchor:
        if self._cached is None:
            text = self._secrets.get(NAME)
            self._cached = Anchor.loads(text) if text is not None else Anchor()
        return self._cached

    def _save(self, anchor: Anchor) -> None:
        self._secrets.put(NAME, anchor.dumps())
        self._cached = anchor
