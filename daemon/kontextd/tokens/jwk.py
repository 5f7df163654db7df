"""Key material per algorithm: make a key, its public JWK, its RFC 7638 thumbprint.

ES256 (P-256) signs every access token and audit checkpoint. RS256 (RSA 2048)
signs only ID tokens for clients that ask for it (OIDC Core §15.1 makes RS256
the one algorithm every relying party must accept; Discovery §3 requires it be
offered).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ES256 = "ES256"
RS256 = "RS256"
ALGS = (ES256, RS256)
RSA_BITS = 2048  # RFC 7518 §3.3: at least 2048
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _num(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def generate(alg: str) -> PrivateKey:
    """A new private key for ``alg``."""
    if alg == RS256:
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The RFC 7517 public JWK members (no ``kid``, ``use`` or ``alg``)."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        size = (numbers.n.bit_length() + 7) // 8
        return {
            "kty": "RSA",
            "n": _b64(numbers.n.to_bytes(size, "big")),
            "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }
    ec_numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(ec_numbers.x.to_bytes(32, "big")),
        "y": _b64(ec_numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members in lexicographic order."""
    required = ("e", "kty", "n") if jwk.get("kty") == "RSA" else ("crv", "kty", "x", "y")
    members = {k: jwk[k] for k in required}
    return _b64(hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest())


def to_public(jwk: dict[str, Any]) -> PublicKey:
    """The public key of a JWK we published (EC P-256 or RSA)."""
    if jwk.get("kty") == "RSA":
        return rsa.RSAPublicNumbers(_num(jwk["e"]), _num(jwk["n"])).public_key()
    point = ec.EllipticCurvePublicNumbers(_num(jwk["x"]), _num(jwk["y"]), ec.SECP256R1())
    return point.public_key()


def to_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def from_pem(pem: str, alg: str) -> PrivateKey:
    """A private key read back from secret storage; its type must match ``alg``."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    wanted = rsa.RSAPrivateKey if alg == RS256 else ec.EllipticCurvePrivateKey
    if not isinstance(key, wanted):
        raise ValueError(f"the stored key is not an {alg} key")
    return key
