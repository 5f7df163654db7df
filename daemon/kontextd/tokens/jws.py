"""One string per token: ES256 signatures in low-S form, base64url in canonical form.

ECDSA is malleable: if ``(r, s)`` verifies, so does ``(r, n − s)``; and the last
character of a base64url segment has spare bits, so several strings decode to
the same bytes. Any of these copies of a token would verify, yet differ from the
original as a string — which let a copy slip past the gateway's "never forward
our token" check. So we sign only low-S (``s <= n/2``, as Bitcoin's BIP 62 and
libsecp256k1 do) and accept only low-S, canonically encoded tokens.
"""

from __future__ import annotations

import base64
from typing import Any

import jwt

# The order of the P-256 group (SEC 2 §2.4.2).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HALF_N = P256_N // 2


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: dict[str, Any], private: Any, headers: dict[str, Any]) -> str:
    """An ES256 JWS of ``claims`` whose signature is in low-S form."""
    token = jwt.encode(claims, private, algorithm="ES256", headers=headers)
    head, payload, signature = token.split(".")
    raw = _unb64(signature)
    s = int.from_bytes(raw[32:], "big")
    if s > HALF_N:
        raw = raw[:32] + (P256_N - s).to_bytes(32, "big")
    return f"{head}.{payload}.{_b64(raw)}"


def canonical(token: str) -> bool:
    """True when ``token`` is three canonical base64url segments with a low-S
    64-byte signature: the only encoding of its bytes we ever issue."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        decoded = [_unb64(p) for p in parts]
    except (ValueError, TypeError):
        return False
    if any(_b64(raw) != part for raw, part in zip(decoded, parts, strict=True)):
        return False
    signature = decoded[2]
    return len(signature) == 64 and int.from_bytes(signature[32:], "big") <= HALF_N
