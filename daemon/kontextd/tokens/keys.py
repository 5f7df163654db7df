"""Signing keys: made, published ahead of use, used, retired — every step recorded.

The private half lives in secret storage under ``signing-key-KID`` (the kid is
the key's RFC 7638 thumbprint); the database keeps the public JWK and the key's
life, so a crash at any point is finished at the next start (``resume``):

- **created**: the row first, then the private half — a crash between leaves a
  row without a secret (retired at the next start), never a private key that no
  record names;
- **published ahead of use**: a rotated-in key is in the JWKS at once but signs
  only from ``signs_from`` (now + ``keys.rotation_grace``), so a resource server
  holding a cached JWKS learns it before it meets a token it signed;
- **active**: the newest key of its algorithm that may sign. One ES256 key signs
  access tokens and audit checkpoints; one RS256 key signs ID tokens for the
  clients that ask for RS256;
- **retiring** (step 1, recorded when its successor starts signing): it signs
  nothing more;
- **retired** (step 2): its private half is deleted, checked gone, then recorded.

The public half stays in the JWKS while tokens it signed may still be live.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from kontextd.secrets import SecretStore, SecretsUnavailable
from kontextd.store.db import Store, StoreError
from kontextd.store.rows import KeyRow
from kontextd.tokens import jwk
from kontextd.tokens.jwk import ALGS, ES256, PrivateKey, public_jwk, thumbprint

log = logging.getLogger("kontextd.keys")
# A retired key stays in the JWKS this long after it stopped signing, for tokens
# not tracked as credentials (ID tokens and /token's access tokens live <= 600 s);
# exec credentials keep their key published until they expire (Store.published_keys).
KEEP_PUBLISHED = 900.0
RETRY = 30.0  # seconds before trying again to delete a retiring key's private half

__all__ = ["KeyRing", "Rotation", "Signer", "SigningKey", "public_jwk", "thumbprint"]


def secret_name(kid: str) -> str:
    return f"signing-key-{kid}"


class Signer:
    """A private key of either algorithm, its id and algorithm. ``repr`` hides the key."""

    def __init__(self, kid: str, private: PrivateKey, alg: str) -> None:
        self.kid = kid
        self.private = private
        self.alg = alg

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kid={self.kid!r}, alg={self.alg!r}, private=<redacted>)"


class SigningKey(Signer):
    """The ES256 key that signs access tokens and audit checkpoints."""

    private: ec.EllipticCurvePrivateKey

    def __init__(self, kid: str, private: ec.EllipticCurvePrivateKey) -> None:
        super().__init__(kid, private, ES256)


@dataclass(frozen=True)
class Rotation:
    """What ``rotate`` did: the new keys, when they sign, which keys they retire."""

    kids: dict[str, str]
    signs_from: float | None
    retiring: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kids[ES256],
            "kids": self.kids,
            "signs_from": self.signs_from,
            "retired": self.retiring,
        }


class KeyRing:
    """The daemon's signing keys: the active ones in memory, their life in the store."""

    def __init__(self, store: Store, secrets: SecretStore) -> None:
        self._store = store
        self._secrets = secrets
        self._lock = threading.RLock()
        self._signing: dict[str, Signer] = {}
        self._jwks_cache: tuple[float, dict[str, Any]] | None = None
        self._parsed: dict[str, Any] = {}
        self._next_change: float | None = 0.0  # when ``tick`` has work; None: none

    # -- signing ----------------------------------------------------------------

    def active(self) -> SigningKey:
        """The ES256 key that signs new access tokens and checkpoints now."""
        key = self.signer(ES256)
        assert isinstance(key, SigningKey)
        return key

    def signer(self, alg: str) -> Signer:
        """The key that signs new ``alg`` tokens now; created on first use."""
        with self._lock:
            key = self._signing.get(alg)
            if key is None:
                key = self._signing[alg] = self._load_or_create(alg)
            return key

    def resume(self) -> None:
        """At start: finish whatever a stopped daemon left half done, load both keys."""
        with self._lock:
            now = time.time()
            lost = [
                row.kid
                for row in self._store.unretired_keys()
                if not row.signs_at(now)
                and row.retiring_at is None
                and self._secrets.get(secret_name(row.kid)) is None
            ]
            if lost:  # rotated in, then the daemon died before its private half was stored
                with self._store.transaction() as tx:
                    tx.mark_keys_retiring(lost, now)
            self._advance(now)
            for alg in ALGS:
                self.signer(alg)

    def tick(self, now: float) -> None:
        """Called by the reaper a few times a second; does work only when some is due."""
        due = self._next_change
        if due is not None and now >= due:
            with self._lock:
                self._advance(now)

    def rotate(self, grace: float) -> Rotation:
        """New keys for every algorithm, published now, signing after ``grace`` seconds."""
        with self._lock:
            now = time.time()
            signs_from = now + grace if grace > 0 else None
            before = [row for row in self._store.unretired_keys() if row.retiring_at is None]
            superseded = [row.kid for row in before if not row.signs_at(now)]
            if superseded:  # a newer rotation replaces one still waiting: those never signed
                with self._store.transaction() as tx:
                    tx.mark_keys_retiring(superseded, now)
            kids = {alg: self._create(alg, signs_from).kid for alg in ALGS}
            retiring = [row.kid for row in before if row.kid not in superseded]
            self._advance(now)
            return Rotation(kids, signs_from, retiring)

    # -- publishing -------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The JWK Set; cached for a second (it changes only on rotation and expiry)."""
        now = time.time()
        cache = self._jwks_cache
        if cache is not None and now - cache[0] < 1.0:
            return cache[1]
        rows = sorted(
            self._store.published_keys(now, KEEP_PUBLISHED),
            key=lambda r: (r.alg != ES256, -r.created_at, r.kid),
        )
        keys = [{**r.public_jwk, "kid": r.kid, "use": "sig", "alg": r.alg} for r in rows]
        result = {"keys": keys}
        self._jwks_cache = (now, result)
        return result

    def public_key(self, kid: str) -> Any:
        """The ES256 public key for ``kid`` if it is in our published set, else None.

        Only ES256: access tokens are pinned to it (RFC 8725 §3.1), so an RS256 kid
        never verifies one."""
        for entry in self.jwks()["keys"]:
            if entry["kid"] == kid and entry["alg"] == ES256:
                if kid not in self._parsed:
                    self._parsed[kid] = jwk.to_public(entry)
                return self._parsed[kid]
        return None

    # -- the life of a key ----------------------------------------------------

    def _load_or_create(self, alg: str) -> Signer:
        now = time.time()
        ready = [r for r in self._store.unretired_keys() if r.alg == alg and r.signs_at(now)]
        if not ready:
            return self._create(alg, None)
        row = ready[-1]
        pem = self._secrets.get(secret_name(row.kid))
        if pem is None:
            raise SecretsUnavailable(
                f"signing key {row.kid} is missing from {self._secrets.backend}; "
                "run 'kontext keys rotate --now' to make a new one"
            )
        return _signer(row.kid, jwk.from_pem(pem, alg), alg)

    def _create(self, alg: str, signs_from: float | None) -> Signer:
        private = jwk.generate(alg)
        public = public_jwk(private.public_key())
        kid = thumbprint(public)
        backend = self._secrets.backend
        with self._store.transaction() as tx:
            tx.insert_key(kid, public, backend, alg, signs_from)
            event: dict[str, Any] = {"event": "key.created", "kid": kid, "alg": alg}
            if signs_from is not None:
                event["signs_from"] = round(signs_from, 3)
            tx.append_event({**event, "storage": backend})
        try:
            self._secrets.put(secret_name(kid), jwk.to_pem(private))
        except BaseException:
            self._forget(kid)
            raise
        self._jwks_cache = None
        return _signer(kid, private, alg)

    def _forget(self, kid: str) -> None:
        """A key whose private half could not be stored never signs: retire its row."""
        try:
            with self._store.transaction() as tx:
                tx.mark_key_retired(kid, time.time())
        except StoreError:
            log.warning("key %s has no private half; it is retired at the next start", kid)

    def _advance(self, now: float) -> None:
        """Start keys whose time has come (step 1 for their predecessors), then finish
        every retirement (step 2). Call with ``self._lock`` held."""
        rows = self._store.unretired_keys()
        retiring: list[KeyRow] = []
        for alg in ALGS:
            ready = [r for r in rows if r.alg == alg and r.signs_at(now)]
            retiring += ready[:-1]  # the newest signs; every older one stops
        if retiring:
            with self._store.transaction() as tx:
                tx.mark_keys_retiring([r.kid for r in retiring], now)
                for row in retiring:
                    tx.append_event({"event": "key.retiring", "kid": row.kid, "alg": row.alg})
            self._signing.clear()
            self._jwks_cache = None
        self._next_change = self._finish_retirements(now)

    def _finish_retirements(self, now: float) -> float | None:
        """Delete the private half of every retiring key, then record it retired.
        Returns when there is more to do: the next key to start, or a retry."""
        upcoming: list[float] = []
        for row in self._store.unretired_keys():
            if row.retiring_at is None:
                if row.signs_from is not None and row.signs_from > now:
                    upcoming.append(row.signs_from)
                continue
            try:
                self._retire(row)
            except (SecretsUnavailable, StoreError) as exc:
                log.warning("cannot finish retiring key %s yet: %s", row.kid, exc)
                upcoming.append(now + RETRY)
        return min(upcoming) if upcoming else None

    def _retire(self, row: KeyRow) -> None:
        name = secret_name(row.kid)
        self._secrets.delete(name)
        if self._secrets.get(name) is not None:
            raise SecretsUnavailable(f"{self._secrets.backend} still holds {name}")
        with self._store.transaction() as tx:
            tx.mark_key_retired(row.kid, time.time())
            tx.append_event({"event": "key.retired", "kid": row.kid, "alg": row.alg})
        self._jwks_cache = None
        log.info("retired signing key %s (%s): its private half is deleted", row.kid, row.alg)


def _signer(kid: str, private: PrivateKey, alg: str) -> Signer:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return SigningKey(kid, private)
    return Signer(kid, private, alg)
