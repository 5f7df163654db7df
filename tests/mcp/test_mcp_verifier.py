"""``kontext.mcp``: the token verifier an MCP server gives the SDK, attacked with tokens
it must refuse, each made for real by a daemon (or forged the way an attacker would)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anyio
import pytest
from conftest import Kontext, api_new_agent, wait_until

from tests.oauth.mcp_flows import RESOURCE, client_id, flow, tokens

pytest.importorskip("mcp", reason="the mcp extra is in the test extra")

from kontext import mcp as kontext_mcp


def verify(k: Kontext, token: str, resource: str = RESOURCE) -> Any:
    verifier = kontext_mcp.KontextTokenVerifier(resource, k.base_url)
    return anyio.run(verifier.verify_token, token)


def test_a_token_for_this_server_is_accepted_with_its_facts(kx: Kontext) -> None:
    f = flow(client_id(kx))
    got = tokens(kx, f)
    access = verify(kx, got["access_token"])
    assert access is not None
    assert access.client_id == f.client_id and access.resource == RESOURCE
    assert access.scopes == ["github:pulls:read"]
    assert access.claims["act"]["sub"].startswith("agent:")
    assert access.subject.startswith("user:")
    assert verify(kx, got["access_token"], RESOURCE + "/") is not None  # a trailing slash


def test_tokens_for_anything_else_are_refused(kx: Kontext) -> None:
    got = tokens(kx, flow(client_id(kx)))
    assert verify(kx, got["access_token"], "http://127.0.0.1:8766/mcp") is None  # other server
    agent = api_new_agent(kx, "github:pulls:read", prefix="mcp-verifier")
    proc, env = kx.token_for(agent)
    try:
        assert verify(kx, env["KONTEXT_TOKEN"]) is None  # an exec credential: aud github
    finally:
        kx.close(proc)


def test_revoked_tokens_are_refused_at_once(kx: Kontext) -> None:
    got = tokens(kx, flow(client_id(kx)))
    assert verify(kx, got["access_token"]) is not None
    with kx.http() as http:
        http.post("/revoke", data={"token": got["access_token"]})
    assert verify(kx, got["access_token"]) is None


def test_revoking_the_agent_or_its_grant_reaches_the_server_on_the_next_request(
    kx: Kontext,
) -> None:
    """Revocation is felt by the tool server itself, not only at kontext: the verifier
    asks on every request, so the client's next call is a 401 (and a new page)."""
    by_agent = tokens(kx, flow(client_id(kx)))["access_token"]
    by_grant = tokens(kx, flow(client_id(kx)))["access_token"]
    assert verify(kx, by_agent) is not None and verify(kx, by_grant) is not None
    kx.ok("revoke", kx.introspect(by_agent)["act"]["sub"])
    assert verify(kx, by_agent) is None
    kx.ok("consent", "revoke", kx.introspect(by_grant)["act"]["sub"])
    assert verify(kx, by_grant) is None


def test_an_expired_token_is_refused(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="mcp-short", max_ttl=10)
    got = tokens(kx, flow(client_id(kx)), agent=name)
    assert verify(kx, got["access_token"]) is not None
    expires = got["expires_in"] + time.time()
    assert wait_until(lambda: time.time() > expires + 1, timeout=60)  # a condition, not a timing
    assert verify(kx, got["access_token"]) is None


def test_another_kontexts_token_for_this_server_is_refused(kx: Kontext, fresh_kx: Kontext) -> None:
    """Another kontext on this machine (another user's, say) approves its own client for
    the same URL: its token names this server, yet it is not this issuer's, nor signed
    by this issuer's keys, even with this issuer's ``kid`` and ``iss`` pasted in."""
    fresh_kx.start()
    theirs = tokens(fresh_kx, flow(client_id(fresh_kx)))["access_token"]
    ours = tokens(kx, flow(client_id(kx)))["access_token"]
    assert _claims(theirs)["aud"] == _claims(ours)["aud"]
    our_head = _header(ours)
    assert verify(kx, theirs) is None
    assert verify(kx, _forge(theirs, header=our_head)) is None
    assert verify(kx, _forge(theirs, header=our_head, iss=kx.base_url)) is None
    assert verify(fresh_kx, ours) is None  # and the other way round


def _header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))))


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def _forge(token: str, header: dict[str, Any] | None = None, **claims: Any) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    head, body, signature = token.split(".")
    old_head = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    old_body = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return f"{part(header or old_head)}.{part({**old_body, **claims})}.{signature}"


def test_forged_and_malformed_tokens_are_refused(kx: Kontext) -> None:
    real = tokens(kx, flow(client_id(kx)))["access_token"]
    forged = [
        _forge(real, aud="http://127.0.0.1:8765/mcp", scope="github:pulls:write"),  # re-scoped
        _forge(real, header={"alg": "none", "typ": "at+jwt"}),
        _forge(real, header={"alg": "HS256", "typ": "at+jwt", "kid": "x"}),
        _forge(real, header={"alg": "ES256", "typ": "JWT", "kid": "x"}),
        "not.a.token",
        "",
        "x" * 9000,
    ]
    for token in forged:
        assert verify(kx, token) is None, token[:60]


def test_auth_gives_the_sdk_settings_for_this_server_and_the_local_issuer(
    kx: Kontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONTEXT_URL", kx.base_url)
    given = kontext_mcp.auth(RESOURCE, scopes=["github:pulls:read"])
    settings = given["auth"]
    assert str(settings.issuer_url) == kx.base_url  # exactly: RFC 8414 compares strings
    assert str(settings.resource_server_url) == RESOURCE
    assert settings.required_scopes == ["github:pulls:read"]
    assert settings.validate_token_resource is True
    assert isinstance(given["token_verifier"], kontext_mcp.KontextTokenVerifier)
    monkeypatch.setenv("KONTEXT_URL", "https://evil.example")
    with pytest.raises(ValueError, match="not a kontext issuer"):
        kontext_mcp.auth(RESOURCE)


def test_token_outside_a_request_says_what_to_do() -> None:
    with pytest.raises(kontext_mcp.NoToken, match=r"kontext\.mcp\.auth"):
        kontext_mcp.token()


def test_tool_errors_hand_refusals_to_the_client_and_nothing_else() -> None:
    import httpx
    from mcp.server.mcpserver.exceptions import ToolError

    import kontext

    asked = httpx.Request("GET", "http://127.0.0.1:1/gw/github/repos/acme/x/pulls?state=open")
    with (
        pytest.raises(
            ToolError, match=r"^GET /gw/github/repos/acme/x/pulls answered 404 Not Found$"
        ),
        kontext_mcp.tool_errors(),
    ):
        httpx.Response(404, request=asked).raise_for_status()
    denied = kontext.Denied(
        "denied by agent_permissions: no", layer="agent_permissions", reason="no"
    )
    with (
        pytest.raises(ToolError, match=r"^denied by agent_permissions: no$"),
        kontext_mcp.tool_errors(),
    ):
        raise denied
    with pytest.raises(KeyError), kontext_mcp.tool_errors():  # a bug stays a crash (logged)
        raise KeyError("x")


def test_a_server_keeps_working_across_a_daemon_restart(fresh_kx: Kontext) -> None:
    """The daemon restarts (on its port, RFC 8414 issuer unchanged): the old access
    token is dead, the client refreshes, and the same verifier accepts the new one."""
    from tests.oauth.mcp_flows import refresh

    k = fresh_kx
    k.start()
    f = flow(client_id(k))
    got = tokens(k, f)
    verifier = kontext_mcp.KontextTokenVerifier(RESOURCE, k.base_url)
    assert anyio.run(verifier.verify_token, got["access_token"]) is not None
    k.stop()
    k.start()
    assert anyio.run(verifier.verify_token, got["access_token"]) is None
    renewed = refresh(k, f, got["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    new = renewed.json()["access_token"]
    assert anyio.run(verifier.verify_token, new) is not None


def test_a_server_follows_a_key_rotation_at_once(fresh_kx: Kontext) -> None:
    """``kontext keys rotate --now`` (say, a key feared leaked): tokens signed by the
    new key are accepted by a verifier that read the JWKS moments before — it reads
    it again for a key it does not know on a token issued since its last read."""
    from tests.oauth.mcp_flows import refresh

    k = fresh_kx
    k.start()
    f = flow(client_id(k))
    got = tokens(k, f)
    verifier = kontext_mcp.KontextTokenVerifier(RESOURCE, k.base_url)
    assert anyio.run(verifier.verify_token, got["access_token"]) is not None
    k.ok("keys", "rotate", "--now")
    renewed = refresh(k, f, got["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    new = renewed.json()["access_token"]
    assert _header(new)["kid"] != _header(got["access_token"])["kid"]
    assert anyio.run(verifier.verify_token, new) is not None
    # A forged token naming a key nobody has is refused, whatever it claims.
    stale = _forge(new, header={**_header(new), "kid": "unknown"}, iat=_claims(new)["iat"] - 60)
    assert anyio.run(verifier.verify_token, stale) is None
