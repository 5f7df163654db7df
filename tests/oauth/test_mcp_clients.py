"""Public MCP clients against the embedded issuer, over HTTP as a client and a browser
send it: RFC 7591 registration, front-channel /authorize with PKCE and an RFC 8707
resource, the consent page's agent choice, tokens bound to the resource and minted
through the request path, rotating refresh tokens, and every way they end."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Kontext, api_audit, api_new_agent, wait_until
from joserfc import jwt
from joserfc.jwk import KeySet
from mcp_flows import (
    READ,
    RESOURCE,
    answer,
    approved_code,
    authorize,
    client_id,
    flow,
    query_of,
    redeem,
    refresh,
    register,
    tokens,
)


def test_metadata_announces_registration_and_public_clients(kx: Kontext) -> None:
    with kx.http() as http:
        meta = http.get("/.well-known/oauth-authorization-server").json()
        cors = http.get(
            "/.well-known/oauth-authorization-server", headers={"Origin": "http://localhost:6274"}
        )
    assert meta["registration_endpoint"] == f"{kx.base_url}/register"
    assert meta["client_id_metadata_document_supported"] is True
    assert "none" in meta["token_endpoint_auth_methods_supported"]
    assert meta["require_pushed_authorization_requests"] is False
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert cors.headers["access-control-allow-origin"] == "*"


def test_registration_answers_rfc7591_and_is_audited(kx: Kontext) -> None:
    answered = register(
        kx,
        token_endpoint_auth_method="client_secret_basic",  # replaced: no secrets here
        grant_types=["authorization_code", "refresh_token"],
        client_uri="https://claude.ai",
    )
    assert answered.status_code == 201, answered.text
    body = answered.json()
    assert body["client_id"].startswith("mcp_")
    assert body["token_endpoint_auth_method"] == "none" and "client_secret" not in body
    assert body["redirect_uris"] == ["http://127.0.0.1:4567/callback"]
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    event = next(e for e in api_audit(kx) if e.get("client_id") == body["client_id"])
    assert event["event"] == "oauth.client_registered"
    assert event["client_name"] == "Claude Desktop" and "peer_uid" in event


@pytest.mark.parametrize(
    "uri",
    [
        "https://claude.ai/api/mcp/auth_callback",  # a web redirect: the code would leave
        "http://evil.example/callback",
        "http://127.0.0.1.evil.example/callback",
        "http://user@127.0.0.1:4567/callback",
        "http://127.0.0.1:4567/callback#fragment",
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "myapp:/callback",  # RFC 8252 §7.1: a private-use scheme is a reversed domain
        "http://127.0.0.1:4567/call back",
    ],
)
def test_registration_refuses_redirects_that_leave_this_computer(kx: Kontext, uri: str) -> None:
    answered = register(kx, redirect_uris=[uri])
    assert answered.status_code == 400, answered.text
    assert answered.json()["error"] == "invalid_redirect_uri"


@pytest.mark.parametrize(
    "uri", ["http://localhost:33418/", "http://[::1]:8080/cb", "com.example.app:/oauth2redirect"]
)
def test_registration_takes_native_app_redirects(kx: Kontext, uri: str) -> None:
    assert register(kx, redirect_uris=[uri]).status_code == 201


def test_registration_needs_json_and_sane_metadata(kx: Kontext) -> None:
    with kx.http() as http:
        form = http.post("/register", data={"redirect_uris": "http://127.0.0.1:1/cb"})
    assert form.status_code == 400 and form.json()["error"] == "invalid_client_metadata"
    for bad in (
        {"grant_types": ["client_credentials"]},
        {"response_types": ["token"]},
        {"client_name": "x" * 101},
        {"client_name": "Claude\u202edesktop"},  # a bidi override is not printable
        {"redirect_uris": []},
    ):
        answered = register(kx, **bad)
        assert answered.status_code == 400, (bad, answered.text)


def test_unknown_clients_and_unregistered_redirects_get_a_page_never_a_redirect(
    kx: Kontext,
) -> None:
    known = client_id(kx)
    for params in (
        flow("mcp_not-registered").query(),
        flow(known).query() | {"redirect_uri": "http://127.0.0.1:9999/elsewhere"},
        flow(known).query() | {"redirect_uri": "http://localhost:9999/callback"},
        flow("https://localhost/client.json").query(),  # resolves to loopback: not fetched
    ):
        page = authorize(kx, params)
        assert page.status_code == 400, page.text
        assert "location" not in page.headers
        assert "This request was refused" in page.text
    refused = [e for e in api_audit(kx) if e["event"] == "oauth.client_refused"]
    assert refused and all(e["endpoint"] == "/authorize" for e in refused[-4:])


def test_a_loopback_redirect_may_use_any_port(kx: Kontext) -> None:
    """RFC 8252 §7.3: the client picks its port when it starts."""
    page = authorize(kx, flow(client_id(kx), port=61234).query())
    assert page.status_code == 200, page.text


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "github:admin"}, "invalid_scope"),
        ({"scope": "offline_access"}, "invalid_scope"),
        ({"resource": ""}, "invalid_target"),
        ({"resource": "https://mcp.example.com/mcp"}, "invalid_target"),
        ({"resource": "http://127.0.0.1:8765/mcp#x"}, "invalid_target"),
        ({"resource": "http://127.0.0.1:{kport}/gw/slack"}, "invalid_target"),
    ],
)
def test_bad_requests_go_back_to_the_client_with_state_and_iss(
    kx: Kontext, change: dict[str, str], error: str
) -> None:
    f = flow(client_id(kx))
    params = f.query() | {k: v.format(kport=kx.port) for k, v in change.items()}
    page = authorize(kx, params)
    assert page.status_code == 303, page.text
    query = query_of(page.headers["location"])
    assert page.headers["location"].startswith(f.redirect_uri)
    assert query["error"] == error and query["state"] == f.state and query["iss"] == kx.base_url


def test_the_page_says_who_asks_for_what_and_a_new_agent_acts(kx: Kontext) -> None:
    f = flow(client_id(kx))
    page = authorize(kx, f.query(f"{READ} offline_access"))
    assert page.status_code == 200
    text = page.text
    assert "An application on this computer" in text and "Claude Desktop" in text
    assert "unverified" in text
    assert "requesting access to <strong>GitHub</strong>" in text
    assert "Read pull requests" in text and "No access to: Read issues" in text
    assert "No org admin access" in text and RESOURCE in text and "Expires in 1 hour" in text
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "form-action 'self' http://127.0.0.1:9999" in page.headers["content-security-policy"]
    name = "claude-desktop-test"
    decided = answer(kx, text, agent="", new_agent=name)
    code = query_of(decided.headers["location"])["code"]
    body = redeem(kx, f, code).json()
    assert body["token_type"] == "Bearer" and body["scope"] == READ and body["refresh_token"]
    keys = KeySet.import_key_set(kx.jwks())
    verified = jwt.decode(body["access_token"], keys, algorithms=["ES256"])
    assert verified.header["typ"] == "at+jwt"
    assert verified.claims["aud"] == RESOURCE
    assert verified.claims["act"] == {"sub": f"agent:{name}"}
    assert verified.claims["client_id"] == f.client_id
    events = api_audit(kx, agent=name)
    kinds = [e["event"] for e in events]
    assert "agent.created" in kinds and "consent.granted" in kinds
    issued = next(e for e in events if e["event"] == "credential.issued")
    assert issued["kind"] == "mcp" and issued["client_id"] == f.client_id
    assert issued["policy_evaluation"] == {
        "org_policy": "allow",
        "user_consent": "allow",
        "agent_permissions": "allow",
    }
    granted = next(e for e in events if e["event"] == "consent.granted")
    assert granted["client_name"] == "Claude Desktop" and granted["resource"] == RESOURCE
    listed = kx.ok("consent", "list").stdout
    assert f"agent:{name} (MCP: Claude Desktop)" in listed


def test_an_existing_agent_is_offered_only_when_its_permissions_cover_the_ask(
    kx: Kontext,
) -> None:
    narrow = api_new_agent(kx, "github:issues:read", consent=False)
    wide = api_new_agent(kx, READ, "github:pulls:write", consent=False)
    f = flow(client_id(kx))
    page = authorize(kx, f.query())
    assert f'value="{wide}"' in page.text and f'value="{narrow}"' not in page.text
    # A form edited to pick the narrow agent anyway: the page comes back, nothing approved.
    again = answer(kx, page.text, agent=narrow)
    assert again.status_code == 400 and "may not use github:pulls:read" in again.text
    chosen = answer(kx, page.text, agent=wide)  # the same request is still open
    code = query_of(chosen.headers["location"])["code"]
    access = redeem(kx, f, code).json()["access_token"]
    assert kx.introspect(access)["act"] == {"sub": f"agent:{wide}"}


def test_deny_sends_access_denied_and_is_audited(kx: Kontext) -> None:
    f = flow(client_id(kx))
    denied = answer(kx, authorize(kx, f.query()).text, decision="deny")
    query = query_of(denied.headers["location"])
    assert query["error"] == "access_denied" and query["state"] == f.state
    assert any(
        e["event"] == "consent.denied" and e["client_id"] == f.client_id for e in api_audit(kx)
    )


def test_every_refusal_of_the_consent_form_is_audited(kx: Kontext) -> None:
    """What the browser posts back and kontext refuses — a forged CSRF token, an agent
    the form may not pick — is on the record, naming the client, as the page's and
    /token's refusals are (a request already decided is gone: a second answer is
    refused as unknown)."""
    narrow = api_new_agent(kx, "github:issues:read", consent=False)
    f = flow(client_id(kx))
    page = authorize(kx, f.query()).text
    forged = answer(kx, page, csrf="x" * 43)
    assert forged.status_code == 400 and "CSRF" in forged.text
    picked = answer(kx, page, agent=narrow)
    assert picked.status_code == 400 and "may not use" in picked.text
    assert answer(kx, page, decision="deny").status_code == 303
    again = answer(kx, page, agent="", new_agent="too-late")
    assert again.status_code == 400
    reasons = [
        e["reason"]
        for e in api_audit(kx)
        if e["event"] == "oauth.client_refused" and e.get("client_id") == f.client_id
    ]
    assert any("CSRF token is wrong" in r for r in reasons), reasons
    assert any(f"agent:{narrow} may not use" in r for r in reasons), reasons
    assert all(r.startswith("consent form refused") for r in reasons)


def test_every_refused_registration_is_audited(kx: Kontext) -> None:
    with kx.http() as http:
        form = http.post("/register", data={"redirect_uris": "http://127.0.0.1:1/cb"})
        broken = http.post(
            "/register", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert form.status_code == broken.status_code == 400
    reasons = [
        e["reason"]
        for e in api_audit(kx, n=200)
        if e["event"] == "oauth.client_refused" and e["endpoint"] == "/register"
    ]
    assert "send the client metadata as application/json" in reasons
    assert "the body is not JSON" in reasons


def test_a_registration_lock_out_is_audited_once(fresh_kx: Kontext) -> None:
    """Refused registrations are throttled per caller like /token's failures; the
    lock-out is one audit line, as it is at /token and /par."""
    from kontextd.oauth.throttle import LIMIT

    k = fresh_kx
    k.start()
    with k.http() as http:
        statuses = [
            http.post("/register", json={"redirect_uris": []}).status_code for _ in range(LIMIT + 3)
        ]
    assert statuses[:LIMIT] == [400] * LIMIT and statuses[LIMIT:] == [429] * 3
    locked = [e for e in api_audit(k) if e["event"] == "oauth.throttled"]
    assert [(e["endpoint"], e["limit"]) for e in locked] == [("/register", LIMIT)]
    assert len([e for e in api_audit(k) if e["event"] == "oauth.client_refused"]) == LIMIT


def test_the_code_needs_its_verifier_redirect_client_and_resource(kx: Kontext) -> None:
    f = flow(client_id(kx))
    for wrong in (
        {"code_verifier": "x" * 50},
        {"redirect_uri": "http://127.0.0.1:9998/callback"},
        {"client_id": client_id(kx)},
        {"resource": "http://127.0.0.1:8766/mcp"},
    ):
        code = approved_code(kx, f)
        refused = redeem(kx, f, code, **wrong)
        assert refused.status_code in (400, 401), (wrong, refused.text)
        assert refused.json()["error"] in ("invalid_grant", "invalid_target"), refused.text


def test_refresh_rotates_and_a_reused_one_ends_the_grant(kx: Kontext) -> None:
    f = flow(client_id(kx))
    first = tokens(kx, f)
    second = refresh(kx, f, first["refresh_token"])
    assert second.status_code == 200, second.text
    assert second.json()["refresh_token"] != first["refresh_token"]
    reused = refresh(kx, f, first["refresh_token"])
    assert reused.json()["error"] == "invalid_grant"
    refusal = [e for e in api_audit(kx) if e["event"] == "oauth.client_refused"][-1]
    assert refusal["endpoint"] == "/token" and refusal["client_id"] == f.client_id
    assert first["refresh_token"] not in str(refusal)
    assert not kx.introspect(second.json()["access_token"])["active"]
    assert refresh(kx, f, second.json()["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_the_agent_ends_tokens_and_refresh(kx: Kontext) -> None:
    f = flow(client_id(kx))
    name = f"revoked-{f.state.lower().replace('_', '-')[:8]}"
    got = tokens(kx, f, agent="", new_agent=name)
    kx.ok("revoke", f"agent:{name}")
    assert not kx.introspect(got["access_token"])["active"]
    refused = refresh(kx, f, got["refresh_token"])
    assert refused.json()["error"] == "invalid_grant"
    assert "revoked" in refused.json()["error_description"]
    kx.ok("agent", "enable", name)  # enabling it again does not bring the grant back
    assert refresh(kx, f, got["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_the_grant_or_the_refresh_token_ends_the_client(kx: Kontext) -> None:
    f = flow(client_id(kx))
    name = "grant-revoked"
    got = tokens(kx, f, agent="", new_agent=f"{name}-{f.state[:6].lower()}".replace("_", "-"))
    agent = kx.introspect(got["access_token"])["act"]["sub"]
    kx.ok("consent", "revoke", agent)
    assert not kx.introspect(got["access_token"])["active"]
    assert refresh(kx, f, got["refresh_token"]).json()["error"] == "invalid_grant"
    g = flow(client_id(kx))
    other = tokens(kx, g)
    with kx.http() as http:  # RFC 7009: the client revokes its refresh token
        assert http.post("/revoke", data={"token": other["refresh_token"]}).status_code == 200
    assert not kx.introspect(other["access_token"])["active"]


def test_an_approval_lasts_one_login_session(fresh_kx: Kontext) -> None:
    """Approved once per session, as ``consent grant`` is: the refresh token never
    outlives the login session, and a new login ends the client's tokens."""
    k = fresh_kx
    k.start()
    assert k.run("login", tty=True).returncode == 0
    ends = json.loads(k.ok("whoami", "--json").stdout)["expires_at"]
    f = flow(client_id(k))
    got = tokens(k, f)
    assert k.introspect(got["access_token"])["exp"] <= ends
    rotated = refresh(k, f, got["refresh_token"]).json()
    assert k.introspect(rotated["access_token"])["active"]
    listed = json.loads(k.ok("consent", "list", "--json").stdout)["grants"]
    (grant,) = [g for g in listed if g.get("client", {}).get("id") == f.client_id]
    assert grant["expires_at"] <= ends and grant["resource"] == RESOURCE
    assert k.run("login", "--force", tty=True).returncode == 0
    assert not k.introspect(rotated["access_token"])["active"]
    ended = refresh(k, f, rotated["refresh_token"]).json()
    assert ended["error"] == "invalid_grant" and "revoked" in ended["error_description"]
    revoked = [e for e in api_audit(k) if e["event"] == "consent.revoked"]
    assert any(grant["id"] in e["grants"] and "session ended" in e["reason"] for e in revoked)


def test_a_token_for_an_mcp_server_is_refused_at_the_gateway(kx: Kontext) -> None:
    got = tokens(kx, flow(client_id(kx)))
    with kx.http() as http:
        called = http.get(
            "/gw/github/repos/acme/backend/pulls",
            headers={"Authorization": f"Bearer {got['access_token']}"},
        )
    assert called.status_code == 403
    assert "not for github" in called.text


def test_the_gateway_is_a_protected_resource(kx: Kontext) -> None:
    with kx.http() as http:
        unauthorized = http.get("/gw/github/repos/acme/backend/pulls")
        root = http.get("/.well-known/oauth-protected-resource").json()
        one = http.get("/.well-known/oauth-protected-resource/gw/github").json()
        missing = http.get("/.well-known/oauth-protected-resource/gw/nothing")
    challenge = unauthorized.headers["www-authenticate"]
    assert f'resource_metadata="{kx.base_url}/.well-known/oauth-protected-resource/gw/github"' in (
        challenge
    )
    assert root["resource"] == kx.base_url and root["authorization_servers"] == [kx.base_url]
    assert one["resource"] == f"{kx.base_url}/gw/github" and READ in one["scopes_supported"]
    assert missing.status_code == 404
    # A token asked for the gateway's resource is audienced to the integration.
    f = flow(client_id(kx), resource=f"{kx.base_url}/gw/github")
    assert (
        tokens(kx, f)["access_token"]
        and kx.introspect(tokens(kx, f)["access_token"])["aud"] == "github"
    )


def test_the_page_opens_only_as_a_document(fresh_kx: Kontext) -> None:
    """An <img> or a frame pointed at /authorize by a web page opens no request; the
    refusal is audited, once a minute at most (any web page can send it)."""
    k = fresh_kx
    k.start()
    f = flow(client_id(k))
    for dest in ("image", "iframe", "script"):
        page = authorize(k, f.query(), **{"Sec-Fetch-Dest": dest, "Sec-Fetch-Site": "cross-site"})
        assert page.status_code == 400 and "csrf" not in page.text
    refused = [e for e in api_audit(k) if e["event"] == "http.refused"]
    assert [(e["path"], e["reason"]) for e in refused] == [
        ("/authorize", "the consent page opens only as a top-level document")
    ]


def test_mcp_clients_off_refuses_registration_authorization_and_tokens(
    fresh_kx: Kontext,
) -> None:
    k = fresh_kx
    k.start()
    f = flow(client_id(k))
    got = tokens(k, f)
    k.ok("config", "set", "mcp.clients", "off")
    assert wait_until(lambda: register(k).status_code == 403, timeout=30)
    assert register(k).json()["error"] == "access_denied"
    page = authorize(k, f.query())
    assert page.status_code == 400 and "mcp.clients" in page.text
    assert refresh(k, f, got["refresh_token"]).json()["error"] == "invalid_client"
    with k.http() as http:
        meta = http.get("/.well-known/oauth-authorization-server").json()
    assert "registration_endpoint" not in meta
    assert meta["require_pushed_authorization_requests"] is True
    reasons = [e["reason"] for e in api_audit(k) if e["event"] == "oauth.client_refused"]
    assert any("mcp.clients" in r for r in reasons)


OIDC_DIR = Path(__file__).resolve().parent.parent / "oidc"


@pytest.mark.skipif(
    shutil.which("node") is None or not (OIDC_DIR / "node_modules" / "openid-client").exists(),
    reason="node and tests/oidc/node_modules (npm ci) are needed",
)
def test_openid_client_registers_dynamically_and_gets_a_token_for_the_resource(
    kx: Kontext,
) -> None:
    """npm openid-client as a public client: RFC 7591 registration, a front-channel
    request with PKCE and resource=, the code grant and a rotating refresh."""
    redirect = "http://127.0.0.1:47001/callback"
    rp = subprocess.Popen(
        ["node", str(OIDC_DIR / "mcp_rp.mjs"), kx.base_url, redirect, RESOURCE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert rp.stdout is not None and rp.stdin is not None
        first = json.loads(rp.stdout.readline() or "{}")
        assert first.get("client_id", "").startswith("mcp_"), rp.stderr.read() if rp.stderr else ""
        with kx.http() as http:
            page = http.get(first["url"])
        decided = answer(kx, page.text, agent="", new_agent="openid-client-mcp")
        out, err = rp.communicate(decided.headers["location"] + "\n", timeout=60)
    finally:
        if rp.poll() is None:
            rp.kill()
    assert rp.returncode == 0, err
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["refreshed"] is True and seen["scope"] == READ
    facts = kx.introspect(seen["access_token"])
    assert facts["aud"] == RESOURCE and facts["client_id"] == first["client_id"]
    assert facts["act"] == {"sub": "agent:openid-client-mcp"}
