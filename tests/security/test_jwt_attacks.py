"""JWT attacks, each tried at introspection (RFC 7662) and at the API gateway.

Every forgery gets ``{"active": false}`` from ``/introspect`` and 401/403 from
``/gw/github/...``; the fake GitHub never sees the call, and the gateway's
refusal is an ``api.denied`` audit event. Forgeries "signed with our key" read the
daemon's signing key from its 0600 fallback file — what someone with the disk
would do — to prove each claim check on its own, not only the signature check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import Kontext, api_audit, api_new_agent, gateway_daemon
from tests.upstream.fake_github import API_KEY, FakeGitHub

PULL = "/gw/github/repos/acme/backend/pulls/7"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(github: FakeGitHub) -> Iterator[Kontext]:
    with gateway_daemon(github.url, API_KEY) as k:
        yield k


class Held:
    """A live credential held open by ``kontext exec``, and what an attacker knows."""

    def __init__(self, k: Kontext) -> None:
        agent = api_new_agent(k, "github:pulls:read", prefix="jwt")
        self.proc, env = k.token_for(agent, "--target", "acme/backend")
        self.token = env["KONTEXT_TOKEN"]
        head, body, self.signature = self.token.split(".")
        self.header: dict[str, Any] = json.loads(unb64(head))
        self.claims: dict[str, Any] = json.loads(unb64(body))
        self.jwks = k.jwks()
        key_file = k.home / "data" / "secrets" / f"signing-key-{self.header['kid']}"
        self.private = key_file.read_text() if key_file.exists() else None


def raw(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def malleate(token: str) -> str:
    """The same signature as ``(r, n - s)``: valid ECDSA, another string (high-S if the
    original was low-S)."""
    head, body, sig = token.split(".")
    raw_sig = unb64(sig)
    s = int.from_bytes(raw_sig[32:], "big")
    return f"{head}.{body}.{b64(raw_sig[:32] + (P256_N - s).to_bytes(32, 'big'))}"


def low_s(token: str) -> str:
    """A token in the form the daemon signs (low-S), whatever pyjwt produced."""
    s = int.from_bytes(unb64(token.split(".")[2])[32:], "big")
    return malleate(token) if s > P256_N // 2 else token


def spare_bits(token: str) -> str:
    """The token with its last character's unused low bits set: decodes to the same
    bytes (86 characters carry 64 bytes; the last has 4 spare bits)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    return token[:-1] + alphabet[last | 0b0001 if last & 0b0001 == 0 else last & ~0b0001]


def ours(h: Held, claims: dict[str, Any], **header: Any) -> str:
    """Signed with the daemon's real key: only the claim or header under test is wrong."""
    if h.private is None:
        pytest.skip("the signing key is in an OS keyring, not a file")
    signed = pyjwt.encode(claims, h.private, algorithm="ES256", headers={**h.header, **header})
    return low_s(signed)


def stranger(h: Held, **header: Any) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return pyjwt.encode(h.claims, key, algorithm="ES256", headers={**h.header, **header})


def hs256_with_public_key(h: Held) -> str:
    """Algorithm confusion: HMAC keyed with our published public key, PEM and JWK forms."""
    jwk = next(k for k in h.jwks["keys"] if k["kid"] == h.header["kid"])
    public = pyjwt.PyJWK(jwk).key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64(json.dumps({**h.header, "alg": "HS256"}).encode())
    body = b64(json.dumps(h.claims).encode())
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def attacker_jwk(h: Held) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    return json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))


NOW = int(time.time())
# label -> (forge, gateway status)
ATTACKS: dict[str, tuple[Callable[[Held], str], int]] = {
    "alg-none": (lambda h: raw({**h.header, "alg": "none"}, h.claims), 401),
    "alg-None-capitalised": (lambda h: raw({**h.header, "alg": "None"}, h.claims), 401),
    "hs256-with-our-public-key": (hs256_with_public_key, 401),
    "unknown-kid": (lambda h: stranger(h, kid="attacker-key"), 401),
    "kid-path-traversal": (lambda h: stranger(h, kid="../../data/secrets/x"), 401),
    "jku-to-attacker-jwks": (lambda h: stranger(h, jku="http://evil.example/jwks.json"), 401),
    "x5u-to-attacker-cert": (lambda h: stranger(h, x5u="http://evil.example/cert.pem"), 401),
    "jwk-header-embeds-attacker-key": (lambda h: stranger(h, jwk=attacker_jwk(h)), 401),
    "wrong-typ-signed-by-us": (lambda h: ours(h, h.claims, typ="JWT"), 401),
    "no-typ-signed-by-us": (lambda h: ours(h, h.claims, typ=None), 401),
    "wrong-iss-signed-by-us": (
        lambda h: ours(h, {**h.claims, "iss": "http://evil.example"}),
        401,
    ),
    "wrong-aud-signed-by-us": (lambda h: ours(h, {**h.claims, "aud": ["slack"]}), 403),
    "expired-signed-by-us": (
        lambda h: ours(h, {**h.claims, "iat": NOW - 7200, "exp": NOW - 3600}),
        401,
    ),
    "not-yet-valid-signed-by-us": (lambda h: ours(h, {**h.claims, "nbf": NOW + 3600}), 401),
    "unknown-jti-signed-by-us": (lambda h: ours(h, {**h.claims, "jti": "never-issued"}), 403),
    # ECDSA malleability: (r, n - s) verifies too; only the low-S form is ours.
    "malleated-high-s-copy": (lambda h: malleate(h.token), 401),
    # The spare bits of the signature's last base64url character: same bytes, other text.
    "base64-spare-bits-copy": (lambda h: spare_bits(h.token), 401),
    "tampered-scope": (
        lambda h: ".".join(
            [
                h.token.split(".")[0],
                b64(json.dumps({**h.claims, "scope": "github:pulls:write"}).encode()),
                h.signature,
            ]
        ),
        401,
    ),
    "tampered-exp": (
        lambda h: ".".join(
            [
                h.token.split(".")[0],
                b64(json.dumps({**h.claims, "exp": NOW + 10**7}).encode()),
                h.signature,
            ]
        ),
        401,
    ),
    "signature-stripped": (lambda h: h.token.rsplit(".", 1)[0] + ".", 401),
    "oversized": (lambda h: h.token + "A" * 9000, 401),
}


@pytest.fixture(scope="module")
def held(gw: Kontext) -> Iterator[Held]:
    h = Held(gw)
    yield h
    gw.close(h.proc)


def test_the_real_token_passes_both_checks(gw: Kontext, held: Held) -> None:
    assert gw.introspect(held.token)["active"] is True
    with gw.http() as http:
        answer = http.get(PULL, headers={"Authorization": f"Bearer {held.token}"})
    assert answer.status_code == 200


@pytest.mark.parametrize("label", sorted(ATTACKS))
def test_forgery_is_inactive_at_introspection_and_refused_at_the_gateway(
    gw: Kontext, github: FakeGitHub, held: Held, label: str
) -> None:
    forge, status = ATTACKS[label]
    forged = forge(held)
    assert forged != held.token
    answer = gw.introspect(forged)
    if label == "wrong-aud-signed-by-us":
        # RFC 7662 §2.2: introspection reports ``aud``; the resource server checks it
        # against itself, as the gateway does below (403, "not for github").
        assert answer["active"] is True and answer["aud"] == ["slack"]
    else:
        assert answer == {"active": False}
    calls = len(github.api_calls())
    with gw.http() as http:
        answer = http.get(PULL, headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == status, answer.text
    assert held.token not in answer.text and forged not in answer.text
    assert len(github.api_calls()) == calls
    denied = [e for e in api_audit(gw, n=200) if e["event"] == "api.denied"]
    # Refusals without a valid token (401) are audited at most once a minute each
    # (test_gateway_refusal_flood_is_bounded): one of them is there.
    same = denied if status != 401 else [e for e in denied if e["status"] == 401]
    assert same and same[-1]["path"] == PULL.removeprefix("/gw/github")
    assert same[-1]["status"] == status
    # The real token was not disturbed by the attempt.
    assert gw.introspect(held.token)["active"] is True


def test_a_revoked_token_is_inactive_and_refused(gw: Kontext, github: FakeGitHub) -> None:
    h = Held(gw)
    try:
        jti = h.claims["jti"]
        gw.ok("revoke", "credential", jti)
        assert gw.introspect(h.token) == {"active": False}
        calls = len(github.api_calls())
        with gw.http() as http:
            answer = http.get(PULL, headers={"Authorization": f"Bearer {h.token}"})
        assert answer.status_code == 403 and "revoked" in answer.text
        assert len(github.api_calls()) == calls
    finally:
        gw.close(h.proc)


def test_the_attack_list_is_complete_for_the_security_md() -> None:
    """SECURITY.md names each of these; keep the count in step with it."""
    text = (Path(__file__).parents[2] / "SECURITY.md").read_text()
    assert f"{len(ATTACKS) + 1} JWT forgeries" in text


def test_a_malleated_copy_in_another_header_never_reaches_the_upstream(
    gw: Kontext, github: FakeGitHub, held: Held
) -> None:
    """The gateway drops any header carrying our token — a malleated copy too: its
    signed parts are the same, and an upstream could turn it back into the token."""
    copies = {"X-Copy": malleate(held.token), "X-Spare": spare_bits(held.token)}
    before = len(github.api_calls())
    with gw.http() as http:
        answer = http.get(PULL, headers={"Authorization": f"Bearer {held.token}", **copies})
    assert answer.status_code == 200
    seen = github.api_calls()[before:]
    assert len(seen) == 1
    headers = {k.lower(): v for k, v in seen[0].headers.items()}
    assert "x-copy" not in headers and "x-spare" not in headers
    assert all(held.token.split(".")[1][:20] not in v for v in headers.values())
