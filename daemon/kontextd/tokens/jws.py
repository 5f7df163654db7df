"""One string per token: ES256 signatures in low-S form, base64url in canonical form.

ECDSA is malleable: if ``(r, s)`` verifies, so does ``(r, n − s)``; and the last
character of a base64url segment has spare bits, so several strings decode to
the same bytes. Any of these copies of a token would verify, yet differ from the
original as a string — which let a copy slip past the gateway's "never forward
our token" check. So we sign only low-S (``s <= n/2``, as Bitcoin's BIP 62 and
libsecp256k1 do) and accept only low-S, canonically encoded tokens.

Signing is RFC 7515 §5.1 done directly on cryptography's ECDSA (OpenSSL), with
the bytes PyJWT would produce (header keys sorted, compact JSON): PyJWT's own
encode added ~40% to each signature (its key checks, a header dict per call, DER
to raw through big integers twice) on the path every ``/token`` takes.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from kontextd.jsonenc import COMPACT

# The order of the P-256 group (SEC 2 §2.4.2).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HALF_N = P256_N // 2


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_ES256 = ec.ECDSA(hashes.SHA256())


@functools.lru_cache(maxsize=64)
def _header_segment(fields: tuple[tuple[str, str], ...]) -> bytes:
    """The protected header's segment (RFC 7515 §4), the same for every token a key signs."""
    header = json.dumps({"alg": "ES256", **dict(fields)}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(header.encode()).rstrip(b"=")


def sign(
    claims: dict[str, Any], private: ec.EllipticCurvePrivateKey, headers: dict[str, str]
) -> str:
    """An ES256 JWS of ``claims`` whose signature is in low-S form."""
    if not isinstance(private.curve, ec.SECP256R1):
        raise ValueError("ES256 signs with a P-256 key")  # RFC 7518 §3.4
    payload = COMPACT.encode(claims).encode()
    signing_input = (
        _header_segment(tuple(sorted(headers.items())))
        + b"."
        + base64.urlsafe_b64encode(payload).rstrip(b"=")
    )
    r, s = decode_dss_signature(private.sign(signing_input, _ES256))
    if s > HALF_N:
        s = P256_N - s
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # RFC 7518 §3.4: R || S, 32 bytes each
    return (signing_input + b"." + base64.urlsafe_b64encode(raw).rstrip(b"=")).decode("ascii")


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
