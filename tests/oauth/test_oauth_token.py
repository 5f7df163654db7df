"""``/token``: codes, refresh rotation, token exchange, revocation — and every refusal.

Tokens are checked with joserfc against the published JWKS, independently of the
daemon's own JWT library.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import Kontext, api_audit, os_user
from joserfc import jwt
from joserfc.jwk import KeySet
from oauth_flows import active, authorized_code, metadata, redeem, token

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def claims_of(k: Kontext, value: str, typ: str) -> dict[str, Any]:
    decoded = jwt.decode(value, KeySet.import_key_set(k.jwks()), algorithms=["ES256"])
    assert decoded.header["typ"] == typ
    return dict(decoded.claims)


def login_tokens(k: Kontext) -> dict[str, Any]:
    code, verifier, redirect = authorized_code(k)
    answer = redeem(k, code, verifier, redirect)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_code_flow_issues_verifiable_access_and_id_tokens(kx: Kontext) -> None:
    tokens = login_tokens(kx)
    issuer = metadata(kx)["issuer"]
    access = claims_of(kx, tokens["access_token"], "at+jwt")
    # The OS account, whatever email the page was sent (oauth_flows posts one).
    assert access["iss"] == issuer and access["sub"] == os_user()
    assert access["client_id"] == "kontext" and access["exp"] - access["iat"] <= 600
    ident = claims_of(kx, tokens["id_token"], "JWT")
    assert ident["iss"] == issuer and ident["aud"] == "kontext"
    assert ident["nonce"] == "n-1" and "email" not in ident
    # One login, one subject: the ID token names the user as the access token does.
    assert ident["sub"] == access["sub"]
    assert active(kx, tokens["access_token"])


def test_wrong_verifier_is_refused_and_burns_the_code(kx: Kontext) -> None:
    code, verifier, redirect = authorized_code(kx)
    wrong = redeem(kx, code, verifier[:-1] + ("A" if verifier[-1] != "A" else "B"), redirect)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert redeem(kx, code, verifier, redirect).status_code == 400


def test_code_is_bound_to_client_and_redirect(kx: Kontext) -> None:
    code, verifier, redirect = authorized_code(kx)
    moved = redeem(kx, code, verifier, redirect.replace("55555", "55556"))
    assert moved.status_code == 400 and "redirect_uri" in moved.json()["error_description"]
    no_secret = token(kx, "kontext", secret=None, grant_type="authorization_code", code="x")
    assert no_secret.status_code == 401


def test_replayed_code_is_refused_and_revokes_what_it_issued(kx: Kontext) -> None:
    code, verifier, redirect = authorized_code(kx)
    first = redeem(kx, code, verifier, redirect).json()
    assert active(kx, first["access_token"])
    replay = redeem(kx, code, verifier, redirect)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert not active(kx, first["access_token"])
    refresh = token(kx, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refresh.status_code == 400
    assert any(e["event"] == "oauth.code_replayed" for e in api_audit(kx, n=50))


@pytest.mark.slow
def test_expired_code_is_refused(kx: Kontext) -> None:
    code, verifier, redirect = authorized_code(kx)
    time.sleep(61)
    late = redeem(kx, code, verifier, redirect)
    assert late.status_code == 400 and "expired" in late.json()["error_description"]


def test_refresh_rotates_and_reuse_revokes_the_family(kx: Kontext) -> None:
    first = login_tokens(kx)
    second = token(kx, grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert active(kx, second["access_token"])
    reuse = token(kx, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reuse.status_code == 400 and "family" in reuse.json()["error_description"]
    assert not active(kx, second["access_token"]) and not active(kx, first["access_token"])
    third = token(kx, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert third.status_code == 400
    # Stored hashed: the raw refresh token is nowhere in the database.
    assert second["refresh_token"].encode() not in kx.database.read_bytes()


def test_a_live_refresh_token_introspects_active_and_a_spent_one_does_not(kx: Kontext) -> None:
    """RFC 7662 §2.1 lets a holder introspect a refresh token: a live one is active,
    with token_type refresh_token, its client, scope, subject and expiry."""
    first = login_tokens(kx)
    seen = kx.introspect(first["refresh_token"])
    assert seen["active"] is True and seen["token_type"] == "refresh_token"
    assert seen["client_id"] == "kontext" and seen["sub"] == os_user()
    assert "offline_access" in seen["scope"].split() and seen["exp"] > time.time()
    assert seen["iss"] == metadata(kx)["issuer"]
    second = token(kx, grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
    assert kx.introspect(first["refresh_token"]) == {"active": False}  # rotated: spent
    assert kx.introspect(second["refresh_token"])["active"] is True
    with kx.http() as http:
        http.post("/revoke", data={"token": second["refresh_token"]})
    assert kx.introspect(second["refresh_token"]) == {"active": False}
    assert kx.introspect("not-a-token") == {"active": False}


def test_revoke_ends_a_refresh_family_and_answers_200_for_anything(kx: Kontext) -> None:
    tokens = login_tokens(kx)
    with kx.http() as http:
        assert http.post("/revoke", data={"token": tokens["refresh_token"]}).status_code == 200
        assert http.post("/revoke", data={"token": "garbage"}).status_code == 200
    assert not active(kx, tokens["access_token"])
    again = token(kx, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert again.status_code == 400


def test_token_exchange_only_shrinks_scopes_and_lifetime(kx: Kontext) -> None:
    agent = kx.agent("github:pulls:read", "github:pulls:write")
    proc, env = kx.token_for(agent)
    try:
        subject = env["KONTEXT_TOKEN"]
        held = claims_of(kx, subject, "at+jwt")
        escalate = token(
            kx,
            secret=None,
            grant_type=EXCHANGE,
            subject_token=subject,
            subject_token_type=ACCESS,
            scope="github:pulls:read github:issues:write",
        )
        assert escalate.status_code == 400 and escalate.json()["error"] == "invalid_scope"
        narrow = token(
            kx,
            secret=None,
            grant_type=EXCHANGE,
            subject_token=subject,
            subject_token_type=ACCESS,
            scope="github:pulls:read",
        )
        assert narrow.status_code == 200, narrow.text
        delegated = claims_of(kx, narrow.json()["access_token"], "at+jwt")
        assert delegated["scope"] == "github:pulls:read"
        # RFC 8693 §4.1: the agent acts, by delegation from its exec credential.
        assert delegated["act"] == {"sub": f"agent:{agent}", "act": {"sub": f"agent:{agent}"}}
        assert delegated["sub"] == held["sub"] and delegated["exp"] <= held["exp"]
        assert active(kx, narrow.json()["access_token"])
    finally:
        kx.close(proc)
    # The delegated token dies with the exec's credential it came from.
    assert not active(kx, narrow.json()["access_token"])


def test_unknown_grant_type_and_forged_subject_are_refused(kx: Kontext) -> None:
    assert token(kx, grant_type="password").json()["error"] == "unsupported_grant_type"
    forged = token(
        kx, secret=None, grant_type=EXCHANGE, subject_token="a.b.c", subject_token_type=ACCESS
    )
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_grant"
