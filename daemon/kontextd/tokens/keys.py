"""ES256 signing keys.

The private key lives in secret storage under its ``kid`` (the RFC 7638 JWK
thumbprint); the database keeps only the public JWK. Rotation adds a key and
retires the old one: its private half is deleted at once (nothing signs with
it again), its public half stays in the JWKS while any token it signed is unexpired.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kontextd.secrets import SecretStore, SecretsUnavailable
from kontextd.store.db import Store


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members in lexicographic order."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    return _b64(hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest())


class SigningKey:
    """A private key and its id. ``repr`` never shows the key."""

    def __init__(self, kid: str, private: ec.EllipticCurvePrivateKey) -> None:
        self.kid = kid
        self.private = private

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, private=<redacted>)"


class KeyRing:
    """The daemon's signing keys: the active one in memory, public ones from the store."""

    def __init__(self, store: Store, secrets: SecretStore) -> None:
        self._store = store
        self._secrets = secrets
        self._lock = threading.Lock()
        self._active: SigningKey | None = None
        self._jwks_cache: tuple[float, dict[str, Any]] | None = None
        self._parsed: dict[str, ec.EllipticCurvePublicKey] = {}

    def active(self) -> SigningKey:
        """The key that signs new tokens; created on first use."""
        with self._lock:
            if self._active is None:
                self._active = self._load_or_create()
            return self._active

    def rotate(self) -> tuple[str, list[str]]:
        """Make a new active key; returns (new kid, retired kids)."""
        with self._lock:
            key = self._create()
            with self._store.transaction():
                retired = self._store.retire_keys(except_kid=key.kid)
            for kid in retired:
                self._secrets.delete(f"signing-key-{kid}")
            self._active = key
            self._jwks_cache = None
            return key.kid, retired

    def jwks(self) -> dict[str, Any]:
        """The JWK Set; cached for a second (it changes only on rotation and expiry)."""
        now = time.time()
        cache = self._jwks_cache
        if cache is not None and now - cache[0] < 1.0:
            return cache[1]
        keys = [
            {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}
            for kid, jwk, _ in self._store.published_keys(now)
        ]
        result = {"keys": keys}
        self._jwks_cache = (now, result)
        return result

    def public_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """The public key for ``kid`` if it is in our published set, else None."""
        for entry in self.jwks()["keys"]:
            if entry["kid"] == kid:
                if kid not in self._parsed:
                    self._parsed[kid] = _jwk_to_public(entry)
                return self._parsed[kid]
        return None

    def _load_or_create(self) -> SigningKey:
        found = self._store.active_key()
        if found is None:
            return self._create()
        kid, _ = found
        pem = self._secrets.get(f"signing-key-{kid}")
        if pem is None:
            raise SecretsUnavailable(
                f"signing key {kid} is missing from {self._secrets.backend}; "
                "run 'kontext keys rotate' to make a new one"
            )
        private = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        return SigningKey(kid, private)

    def _create(self) -> SigningKey:
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = public_jwk(private.public_key())
        kid = thumbprint(jwk)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self._secrets.put(f"signing-key-{kid}", pem)
        with self._store.transaction() as tx:
            tx.insert_key(kid, jwk, self._secrets.backend)
            tx.append_event({"event": "key.created", "kid": kid, "storage": self._secrets.backend})
        self._jwks_cache = None
        return SigningKey(kid, private)


def _jwk_to_public(jwk: dict[str, str]) -> ec.EllipticCurvePublicKey:
    def num(value: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    return ec.EllipticCurvePublicNumbers(num(jwk["x"]), num(jwk["y"]), ec.SECP256R1()).public_key()
