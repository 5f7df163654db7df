"""Signed checkpoints: "event N has hash H", signed ES256 by the daemon's key.

A checkpoint is a compact JWS (RFC 7515) with header ``{"alg": "ES256", "kid",
"typ": "kontext-checkpoint+jwt"}`` and claims ``event_id``, ``event_hash``,
``kind`` (``checkpoint``, or ``anchor`` when left behind by pruning) and
``iat``. Anyone holding the public JWK of ``kid`` (kept forever in the
``signing_keys`` table, and written into exports) can check it; rewriting the
chain after a checkpoint needs the private key, which never leaves the keyring.
"""

from __future__ import annotations

import base64
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

TYP = "kontext-checkpoint+jwt"
KINDS = ("checkpoint", "anchor")


class BadSignature(ValueError):
    """The checkpoint's signature, header or claims do not verify."""


def sign(private: ec.EllipticCurvePrivateKey, kid: str, claims: dict[str, Any]) -> str:
    """Sign the claims (``event_id``, ``event_hash``, ``kind``, ``iat``)."""
    return jwt.encode(claims, private, algorithm="ES256", headers={"kid": kid, "typ": TYP})


def _public(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    def num(value: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise BadSignature("the key is not an ES256 (P-256) key")
    return ec.EllipticCurvePublicNumbers(num(jwk["x"]), num(jwk["y"]), ec.SECP256R1()).public_key()


def verify(token: str, kid: str, jwk: dict[str, Any] | None) -> dict[str, Any]:
    """The verified claims; raises ``BadSignature``. The algorithm is pinned (RFC 8725 §3.1)."""
    if jwk is None:
        raise BadSignature(f"signed by unknown key {kid}")
    try:
        header = jwt.get_unverified_header(token)
        if header.get("kid") != kid or header.get("typ") != TYP:
            raise BadSignature("header does not match the recorded key id and type")
        claims: dict[str, Any] = jwt.decode(
            token, _public(jwk), algorithms=["ES256"], options={"verify_iat": False}
        )
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        if isinstance(exc, BadSignature):
            raise
        raise BadSignature(f"signature does not verify ({type(exc).__name__})") from exc
    return claims
