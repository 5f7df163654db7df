"""Access tokens, checked by an independent JOSE library (joserfc, not the product's pyjwt).

Keys come from ``/jwks.json`` and the issuer from the RFC 8414 metadata, both over
loopback HTTP, exactly as a resource server would fetch them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from typing import Any

import pytest
from conftest import Kontext, api_new_agent, wait_until
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, import_key
from joserfc.jwt import JWTClaimsRegistry


def metadata(k: Kontext) -> dict[str, Any]:
    with k.http() as client:
        answer = client.get("/.well-known/oauth-authorization-server")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    return answer.json()


def verified(k: Kontext, token: str) -> jwt.Token:
    """Verify ``token`` against the published JWKS with joserfc; return header and claims."""
    keys = KeySet.import_key_set(k.jwks())
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    JWTClaimsRegistry(
        leeway=0,
        iss={"essential": True, "value": metadata(k)["issuer"]},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    return decoded


def token_of(k: Kontext, agent: str, *exec_args: str) -> tuple[str, dict[str, str]]:
    """A token minted for ``agent`` and the child's env; the exec is closed again at once.

    Claims are checked by signature, which does not need the credential to be live.
    """
    proc, env = k.token_for(agent, *exec_args)
    k.close(proc)
    return env["KONTEXT_TOKEN"], env


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_token_verifies_with_an_independent_library_against_the_jwks(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", "github:pulls:write", prefix="tok")
    proc, env = kx.token_for(name)
    try:
        token = env["KONTEXT_TOKEN"]
        decoded = verified(kx, token)
        header, claims = decoded.header, decoded.claims

        assert header["typ"] == "at+jwt"
        assert header["alg"] == "ES256"
        assert header["kid"] in {key["kid"] for key in kx.jwks()["keys"]}

        assert claims["iss"] == metadata(kx)["issuer"] == kx.base_url
        assert claims["sub"].startswith("user:")
        assert claims["act"] == {"sub": f"agent:{name}"}
        assert claims["client_id"] == f"agent:{name}"
        assert claims["aud"] == "github"
        assert claims["scope"] == "github:pulls:read github:pulls:write"
        assert claims["jti"] == env["KONTEXT_CREDENTIAL_ID"]
        assert len(claims["jti"]) >= 16
        assert abs(claims["iat"] - time.time()) < 30
        assert claims["exp"] - claims["iat"] == 600
        assert int(env["KONTEXT_TOKEN_EXPIRES"]) == claims["exp"]
        assert "target" not in claims
        JWTClaimsRegistry(aud={"essential": True, "value": "github"}).validate(claims)

        # Introspection agrees with the token and says it is live.
        answer = kx.introspect(token)
        assert answer["active"] is True
        for claim in ("sub", "act", "client_id", "aud", "scope", "jti", "exp", "iss"):
            assert answer[claim] == claims[claim]
    finally:
        kx.close(proc)


def test_jwks_is_public_keys_only(kx: Kontext) -> None:
    with kx.http() as client:
        answer = client.get("/jwks.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/jwk-set+json")
    keys = answer.json()["keys"]
    assert {key["alg"] for key in keys} == {"ES256", "RS256"}
    assert keys[0]["alg"] == "ES256"  # the access-token key comes first
    for key in keys:
        if key["alg"] == "ES256":
            assert key["kty"] == "EC" and key["crv"] == "P-256"
        else:  # signs only ID tokens for clients that ask for RS256
            assert key["kty"] == "RSA" and len(key["n"]) >= 342  # 2048 bits, base64url
        assert key["use"] == "sig"
        assert key["kid"] == import_key(key).thumbprint()  # RFC 7638
        # Never the private part (EC d; RSA d, p, q, dp, dq, qi).
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_metadata_describes_this_issuer(kx: Kontext) -> None:
    meta = metadata(kx)
    issuer = meta["issuer"]
    assert issuer == f"http://127.0.0.1:{kx.port}"
    assert meta["jwks_uri"] == f"{issuer}/jwks.json"
    assert meta["introspection_endpoint"] == f"{issuer}/introspect"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    # The advertised URLs are the ones that answer.
    with kx.http() as client:
        assert client.get(meta["jwks_uri"]).json() == kx.jwks()
        assert client.post(meta["introspection_endpoint"], data={"token": "x"}).json() == {
            "active": False
        }


@pytest.mark.parametrize(
    ("exec_args", "max_ttl", "lifetime"),
    [
        ((), None, 600),
        (("--ttl", "2m"), None, 120),
        ((), 300, 300),
        (("--ttl", "1h"), None, 3600),
    ],
    ids=["default-10m", "ttl-2m", "agent-max-5m", "ttl-1h-at-the-default-max"],
)
def test_token_lifetime(
    kx: Kontext, exec_args: tuple[str, ...], max_ttl: int | None, lifetime: int
) -> None:
    name = api_new_agent(kx, "github:contents:read", prefix="ttl", max_ttl=max_ttl)
    token, env = token_of(kx, name, *exec_args)
    claims = verified(kx, token).claims
    assert claims["exp"] - claims["iat"] == lifetime
    assert int(env["KONTEXT_TOKEN_EXPIRES"]) == claims["exp"]


def test_explicit_ttl_over_the_agents_max_is_denied(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:contents:read", prefix="ttl", max_ttl=300)
    proc = kx.run(
        "exec", "--agent", name, "--ttl", "10m", "--", sys.executable, "-c", "print('must not run')"
    )
    assert proc.returncode == 122
    assert proc.stdout == ""
    assert proc.stderr == (
        f"kontext: denied by agent permissions: agent:{name} may hold credentials for at most "
        "5m, not 10m\n"
    )


def test_target_claim(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="tgt")
    token, _ = token_of(kx, name, "--target", "acme-corp/backend")
    assert verified(kx, token).claims["target"] == "acme-corp/backend"


def test_scope_subset_and_slack_audience(kx: Kontext) -> None:
    name = api_new_agent(
        kx, "github:pulls:read", "github:issues:read", "slack:chat:write", prefix="aud"
    )
    token, env = token_of(kx, name, "--scope", "github:issues:read")
    claims = verified(kx, token).claims
    assert claims["scope"] == "github:issues:read"
    assert claims["aud"] == "github"
    assert "SLACK_TOKEN" not in env

    token, env = token_of(kx, name)
    claims = verified(kx, token).claims
    assert sorted(claims["aud"]) == ["github", "slack"]
    assert env["SLACK_TOKEN"] == env["GITHUB_TOKEN"] == token


# -- introspection refuses what it cannot vouch for ----------------------------


def _forgeries(token: str) -> dict[str, str]:
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(unb64(header_b64))
    payload = json.loads(unb64(payload_b64))

    wider = {**payload, "scope": payload["scope"] + " github:contents:write"}
    tampered = f"{header_b64}.{b64(json.dumps(wider).encode())}.{signature_b64}"

    # The same claims and kid, signed by a key that is not ours.
    stranger = ECKey.generate_key("P-256", parameters={"kid": header["kid"]})
    foreign = jwt.encode(header, payload, KeySet([stranger]), algorithms=["ES256"])

    none_header = {"alg": "none", "typ": "at+jwt", "kid": header["kid"]}
    alg_none = f"{b64(json.dumps(none_header).encode())}.{payload_b64}."

    # alg confusion: HS256 "signed" with the public key's bytes as the HMAC secret.
    hs_header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}).encode())
    mac = hmac.new(b"public-key-as-secret", f"{hs_header}.{payload_b64}".encode(), hashlib.sha256)
    hs256 = f"{hs_header}.{payload_b64}.{b64(mac.digest())}"

    # Our own signature, but a header claiming a different typ is not an access token.
    wrong_typ = b64(json.dumps({**header, "typ": "JWT"}).encode())
    retyped = f"{wrong_typ}.{payload_b64}.{signature_b64}"

    return {
        "tampered-payload": tampered,
        "foreign-key": foreign,
        "alg-none": alg_none,
        "hs256-confusion": hs256,
        "retyped-header": retyped,
        "truncated-signature": token[:-10],
        "garbage": "not-a-token",
        "three-dots-of-garbage": "a.b.c",
        "huge": "A" * 20000,
    }


def test_introspection_says_inactive_for_forgeries(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="forge")
    proc, env = kx.token_for(name)
    try:
        token = env["KONTEXT_TOKEN"]
        assert kx.introspect(token)["active"] is True
        forgeries = _forgeries(token)
        # The forgeries really are forgeries to an independent verifier too.
        for label in ("tampered-payload", "foreign-key", "alg-none", "hs256-confusion"):
            with pytest.raises((JoseError, ValueError)):
                verified(kx, forgeries[label])
        answers = {label: kx.introspect(forged) for label, forged in forgeries.items()}
        assert answers == {label: {"active": False} for label in forgeries}
        # None of that disturbed the real token.
        assert kx.introspect(token)["active"] is True
    finally:
        kx.close(proc)


def test_introspection_without_a_token_is_a_clear_error(kx: Kontext) -> None:
    with kx.http() as client:
        for body in ("", "token=", "other=1"):
            answer = client.post(
                "/introspect",
                content=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code == 400
            # RFC 6749 §5.2 (RFC 7662 §2.3 refers to it): the OAuth error shape.
            assert answer.json() == {
                "error": "invalid_request",
                "error_description": "missing token parameter",
            }
        answer = client.post("/introspect", json={"token": "x"})
        assert answer.status_code == 400
        assert "x-www-form-urlencoded" in answer.json()["error_description"]


# -- key rotation ----------------------------------------------------------------


def test_rotation_new_kid_old_tokens_stay_verifiable_until_revoked(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    name = api_new_agent(k, "github:pulls:read", prefix="rot")
    old_proc, old_env = k.token_for(name)
    try:
        old_token = old_env["KONTEXT_TOKEN"]
        old_kid = verified(k, old_token).header["kid"]

        rotated = k.ok("keys", "rotate", "--now")
        assert rotated.stdout.startswith("new signing key ")
        assert "retired 2" in rotated.stdout  # the ES256 key and the RS256 (ID token) key
        new_kid = rotated.stdout.split()[3].rstrip(";")
        assert new_kid != old_kid

        new_token, _ = token_of(k, name)
        assert verified(k, new_token).header["kid"] == new_kid

        # The old key stays published while its token is unexpired; the old token
        # still verifies independently and still introspects active.
        assert wait_until(lambda: {key["kid"] for key in k.jwks()["keys"]} >= {old_kid, new_kid})
        assert verified(k, old_token).claims["jti"] == old_env["KONTEXT_CREDENTIAL_ID"]
        assert k.introspect(old_token)["active"] is True

        k.ok("revoke", "credential", old_env["KONTEXT_CREDENTIAL_ID"])
        assert k.introspect(old_token) == {"active": False}
    finally:
        k.close(old_proc)
    listed = json.loads(k.ok("keys", "list", "--json").stdout)
    assert listed["keys"][0]["kid"] == new_kid


def test_a_jti_never_starts_with_a_dash() -> None:
    """Users type jtis as arguments (``kontext revoke credential JTI``): one starting
    with ``-`` read as an option (seen in CI: "no such option: -_"). 4,000 draws would
    show one of 64 starting so all but surely (1 - (63/64)^4000 > 1 - 1e-27)."""
    from kontextd.tokens.mint import new_jti

    drawn = [new_jti() for _ in range(4000)]
    assert not [j for j in drawn if j.startswith("-")]
    assert len(set(drawn)) == 4000 and {len(j) for j in drawn} == {22}
