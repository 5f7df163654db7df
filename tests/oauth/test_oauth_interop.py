"""Certified third-party OAuth/OIDC software against the embedded issuer: Authlib
(PyPI) validates the discovery document, authenticates the way it really does
(``client_secret_basic`` without form-encoding the ``:`` in an agent's id) and
asks for an RS256 ID token; npm openid-client runs a whole login as a relying
party; every token is checked with joserfc (or by openid-client itself)."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from conftest import Kontext, api_new_agent, os_user
from joserfc import jwt
from joserfc.jwk import KeySet
from oauth_flows import REDIRECT, client_secret, decide, metadata, pkce, query_of

authlib = pytest.importorskip("authlib", reason="Authlib is in the test extra")
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402
from authlib.oidc.discovery import OpenIDProviderMetadata  # noqa: E402

REDIRECT_URI = REDIRECT.format(port=55555)


def session(k: Kontext, client_id: str, **kw: Any) -> OAuth2Session:
    return OAuth2Session(
        client_id=client_id,
        client_secret=client_secret(k),
        token_endpoint_auth_method="client_secret_basic",
        redirect_uri=REDIRECT_URI,
        **kw,
    )


def push_with(k: Kontext, client: OAuth2Session, **params: str) -> Any:
    """POST /par authenticated exactly as Authlib authenticates at the token endpoint."""
    return client.post(
        f"{k.base_url}/par",
        data={"response_type": "code", "redirect_uri": REDIRECT_URI, **params},
        auth=client.client_auth(client.token_endpoint_auth_method),
        withhold_token=True,
    )


def code_for(k: Kontext, client: OAuth2Session, client_id: str, **params: str) -> tuple[str, str]:
    verifier, challenge = pkce()
    pushed = push_with(k, client, code_challenge=challenge, code_challenge_method="S256", **params)
    assert pushed.status_code == 201, pushed.text
    answer = decide(k, client_id, pushed.json()["request_uri"])
    assert answer.status_code == 303, answer.text
    return query_of(answer.headers["location"])["code"], verifier


def test_authlib_validates_the_discovery_document(kx: Kontext) -> None:
    meta = metadata(kx)
    OpenIDProviderMetadata(meta).validate()  # OIDC Discovery §3, as Authlib reads it
    AuthorizationServerMetadata(meta).validate()  # RFC 8414 §2
    assert meta["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    # Stated, not left to defaults that claim request objects by reference.
    assert meta["request_uri_parameter_supported"] is False
    assert meta["request_parameter_supported"] is False
    assert meta["require_pushed_authorization_requests"] is False  # MCP clients do not push


def test_authlib_client_secret_basic_with_a_colon_in_the_client_id(kx: Kontext) -> None:
    agent = api_new_agent(kx, "github:pulls:read", prefix="authlib", consent=False)
    client_id = f"agent:{agent}"
    client = session(kx, client_id)
    code, verifier = code_for(kx, client, client_id, scope="github:pulls:read")
    token = client.fetch_token(
        f"{kx.base_url}/token",
        grant_type="authorization_code",
        code=code,
        code_verifier=verifier,
    )
    # Authlib really sent the id raw (no %3A): RFC 6749 §2.3.1 asks for encoding,
    # Authlib (like many helpers) does not, and both spellings are accepted.
    sent = client.post(
        f"{kx.base_url}/revoke",
        data={"token": token["access_token"]},
        withhold_token=True,
        auth=client.client_auth(client.token_endpoint_auth_method),
    ).request.headers["Authorization"]
    assert base64.b64decode(sent.split()[1]).decode().startswith(f"{client_id}:")
    claims = jwt.decode(
        token["access_token"], KeySet.import_key_set(kx.jwks()), algorithms=["ES256"]
    ).claims
    assert claims["client_id"] == client_id and claims["scope"] == "github:pulls:read"


@pytest.mark.parametrize(
    "user",
    ["agent:{a}", "agent%3A{a}", "agent%3a{a}"],
    ids=["raw", "form-encoded", "lower-case-escape"],
)
def test_both_spellings_of_basic_credentials_authenticate_and_nothing_else(
    kx: Kontext, user: str
) -> None:
    agent = api_new_agent(kx, "github:pulls:read", prefix="basic", consent=False)
    secret = client_secret(kx)
    _, challenge = pkce()
    form = {
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "github:pulls:read",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }

    def pushed(userpass: str) -> int:
        header = "Basic " + base64.b64encode(userpass.encode()).decode()
        with kx.http() as http:
            return http.post("/par", data=form, headers={"Authorization": header}).status_code

    assert pushed(f"{user.format(a=agent)}:{secret}") == 201
    # Near misses are refused: a wrong or empty secret, the secret glued to the id,
    # an encoded separator, another agent's id.
    assert pushed(f"{user.format(a=agent)}:{secret[:-1]}x") == 401
    assert pushed(f"{user.format(a=agent)}:") == 401
    assert pushed(f"{user.format(a=agent)}{secret}") == 401
    assert pushed(urllib.parse.quote(f"agent:{agent}:{secret}", safe="")) == 401
    assert pushed(f"agent:{agent}-other:{secret}") == 401


def test_an_rs256_id_token_for_a_client_that_asks_and_es256_by_default(kx: Kontext) -> None:
    client = session(kx, "kontext", scope="openid offline_access")
    jwks = KeySet.import_key_set(kx.jwks())
    for asked, alg in ((None, "ES256"), ("RS256", "RS256")):
        nonce = secrets.token_urlsafe(12)
        extra = {"id_token_signed_response_alg": asked} if asked else {}
        code, verifier = code_for(
            kx, client, "kontext", scope="openid offline_access", nonce=nonce, **extra
        )
        token = client.fetch_token(
            f"{kx.base_url}/token",
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
        )
        decoded = jwt.decode(token["id_token"], jwks, algorithms=[alg])
        assert decoded.header["alg"] == alg
        signer = next(k for k in kx.jwks()["keys"] if k["kid"] == decoded.header["kid"])
        assert signer["alg"] == alg and signer["kty"] == ("RSA" if alg == "RS256" else "EC")
        # Authlib's own OIDC Core §3.1.3.7 checks of the ID token's claims.
        claims = CodeIDToken(
            dict(decoded.claims),
            dict(decoded.header),
            {"iss": {"value": kx.base_url}, "aud": {"value": "kontext"}},
            {"nonce": nonce},
        )
        claims.validate()
        assert claims["sub"] == os_user()
        # Access tokens stay ES256 whatever the ID token is signed with.
        access = jwt.decode(token["access_token"], jwks, algorithms=["ES256"])
        assert access.claims["sub"] == claims["sub"]


def test_an_unknown_id_token_algorithm_is_refused_at_the_push(kx: Kontext) -> None:
    client = session(kx, "kontext")
    _, challenge = pkce()
    for alg in ("none", "HS256", "PS256"):
        answer = push_with(
            kx,
            client,
            scope="openid",
            code_challenge=challenge,
            code_challenge_method="S256",
            id_token_signed_response_alg=alg,
        )
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_request"
        assert "id_token_signed_response_alg" in answer.json()["error_description"]


OIDC_DIR = Path(__file__).resolve().parent.parent / "oidc"


@pytest.mark.skipif(
    shutil.which("node") is None or not (OIDC_DIR / "node_modules" / "openid-client").exists(),
    reason="node and tests/oidc/node_modules (npm ci) are needed",
)
def test_openid_client_logs_in_refreshes_and_introspects_with_rs256(kx: Kontext) -> None:
    """npm openid-client as the relying party: discovery, PAR with client_secret_basic,
    PKCE, RFC 9207 iss, an RS256 ID token it checks itself, a refresh, and the new
    refresh token introspected active."""
    rp = subprocess.Popen(
        [
            "node",
            str(OIDC_DIR / "rp.mjs"),
            kx.base_url,
            "kontext",
            str(kx.runtime / "oauth-client-secret"),
            REDIRECT_URI,
            "RS256",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert rp.stdout is not None and rp.stdin is not None
        line = rp.stdout.readline()
        assert line, rp.stderr.read() if rp.stderr else ""
        query = query_of(json.loads(line)["url"])
        assert set(query) == {"client_id", "request_uri"}  # pushed, not in the URL
        answer = decide(kx, "kontext", query["request_uri"])
        assert answer.status_code == 303, answer.text
        out, err = rp.communicate(answer.headers["location"] + "\n", timeout=60)
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.communicate(timeout=10)
    assert rp.returncode == 0, err
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {
        "sub": os_user(),
        "id_token_alg": "RS256",
        "refreshed": True,
        "introspected": {"active": True, "token_type": "refresh_token"},
    }
