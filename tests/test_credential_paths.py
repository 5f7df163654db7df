"""One notion of a credential (DESIGN.md rule 8), whichever path minted it.

Seven ways a token comes to act for an agent: ``kontext exec``; an RFC 8693
exchange of the exec's credential; an agent client's exchange of the user's
login token; an agent client redeeming its consent code at ``/token``; a public
MCP client redeeming its code, or its refresh token, for the gateway's resource;
an MCP server exchanging the token it was sent. For each, every way a credential
must end is tried — the agent revoked, deleted (and a namesake created), the
consent revoked, the parent ended, the login session ended, the local account's
session ended by a login, the grant expired — and right after it, introspection
says inactive, the gateway (in front of a fake GitHub) refuses, and an MCP
client's refresh token is inactive and refused. Each is also audited, listed,
and within the agent's max TTL. (An MCP grant lasts an hour at least: its expiry
is tried with the daemon's wall clock moved, ``tests/faults/test_clock.py``.)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import (
    Kontext,
    api_audit,
    api_new_agent,
    approve_over_http,
    gateway_daemon,
    wait_until,
)
from tests.oauth import mcp_flows
from tests.oauth.oauth_flows import authorized_code, client_secret, decide, pkce, push, redeem
from tests.upstream.fake_github import API_KEY, FakeGitHub

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
READ = "github:pulls:read"
PULL = "/gw/github/repos/acme/backend/pulls/7"
EMAIL = "alice@acme.com"


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


def logged_in(github: FakeGitHub) -> Iterator[Kontext]:
    with gateway_daemon(github.url, API_KEY) as k:
        k.ok("login", env={"KX_EMAIL": EMAIL}, tty=True)
        yield k


@pytest.fixture(scope="module")
def world(github: FakeGitHub) -> Iterator[Kontext]:
    """A daemon with alice logged in (so the user-token path has a user token)."""
    yield from logged_in(github)


@pytest.fixture
def own_world(github: FakeGitHub) -> Iterator[Kontext]:
    """The same, for a test that ends the session."""
    yield from logged_in(github)


@dataclass
class Minted:
    """A token acting for ``agent``; ``end_parent`` ends what it was minted from."""

    agent: str
    token: str
    end_parent: Callable[[], None]
    cleanup: Callable[[], None]
    refresh: Callable[[], httpx.Response] | None = None  # an MCP client's, tried once
    refresh_token: str | None = None


def _exchange(k: Kontext, subject: str, client: str | None = None) -> str:
    auth = (client.replace(":", "%3A"), client_secret(k)) if client else None
    form = {"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ACCESS}
    with k.http() as http:
        answer = http.post("/token", data=form, auth=auth)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _revoke(k: Kontext, token: str) -> None:
    with k.http() as http:
        assert http.post("/revoke", data={"token": token}).status_code == 200


def mint_exec(k: Kontext, agent: str) -> Minted:
    proc, env = k.token_for(agent)
    return Minted(agent, env["KONTEXT_TOKEN"], lambda: k.close(proc), lambda: k.close(proc))


def mint_exec_exchange(k: Kontext, agent: str) -> Minted:
    held = mint_exec(k, agent)
    return Minted(agent, _exchange(k, held.token), held.end_parent, held.cleanup)


def mint_user_exchange(k: Kontext, agent: str) -> Minted:
    code, verifier, redirect = authorized_code(k)
    user = redeem(k, code, verifier, redirect).json()["access_token"]
    token = _exchange(k, user, f"agent:{agent}")
    return Minted(agent, token, lambda: _revoke(k, user), lambda: None)


def mint_code(k: Kontext, agent: str, duration: int = 3600) -> Minted:
    client = f"agent:{agent}"
    verifier, challenge = pkce()
    pushed = push(
        k,
        client,
        code_challenge=challenge,
        code_challenge_method="S256",
        scope=READ,
        state=secrets.token_urlsafe(8),
        grant_duration=str(duration),
    )
    assert pushed.status_code == 201, pushed.text
    decided = decide(k, client, pushed.json()["request_uri"])
    query = dict(httpx.URL(decided.headers["location"]).params)
    answer = redeem(k, query["code"], verifier, "http://127.0.0.1:55555/callback/test", client)
    assert answer.status_code == 200, answer.text
    token = str(answer.json()["access_token"])
    # Its parent is its grant: /revoke of the token itself is the nearest "parent ends".
    return Minted(agent, token, lambda: _revoke(k, token), lambda: None)


def _mcp(k: Kontext, agent: str) -> tuple[mcp_flows.Flow, dict[str, str]]:
    """A public MCP client approved on the page to act as ``agent`` at the gateway."""
    f = mcp_flows.flow(mcp_flows.client_id(k), resource=f"{k.base_url}/gw/github")
    return f, {**mcp_flows.tokens(k, f, agent=agent)}


def _mcp_minted(k: Kontext, agent: str, f: mcp_flows.Flow, got: dict[str, str]) -> Minted:
    refresh_token = got["refresh_token"]
    return Minted(
        agent,
        got["access_token"],
        lambda: _revoke(k, refresh_token),  # RFC 7009: the client ends its grant
        lambda: None,
        refresh=lambda: mcp_flows.refresh(k, f, refresh_token),
        refresh_token=refresh_token,
    )


def mint_mcp_code(k: Kontext, agent: str) -> Minted:
    return _mcp_minted(k, agent, *_mcp(k, agent))


def mint_mcp_refresh(k: Kontext, agent: str) -> Minted:
    f, got = _mcp(k, agent)
    refreshed = mcp_flows.refresh(k, f, got["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    return _mcp_minted(k, agent, f, refreshed.json())


def mint_mcp_exchange(k: Kontext, agent: str) -> Minted:
    """An MCP server exchanges the token it was sent (``kontext.mcp.token()``); its
    parent is that access token (the client's refresh token is mcp-code's to test)."""
    _, got = _mcp(k, agent)
    token = _exchange(k, got["access_token"])
    return Minted(agent, token, lambda: _revoke(k, got["access_token"]), lambda: None)


PATHS = {
    "exec": mint_exec,
    "exchange-of-exec": mint_exec_exchange,
    "exchange-of-user-token": mint_user_exchange,
    "consent-code": mint_code,
    "mcp-code": mint_mcp_code,
    "mcp-refresh": mint_mcp_refresh,
    "exchange-of-mcp": mint_mcp_exchange,
}
NO_LOGIN = [p for p in PATHS if p != "exchange-of-user-token"]  # it needs a user token
ON_THE_AGENTS_GRANT = ("exec", "exchange-of-exec", "exchange-of-user-token")


def new_agent(k: Kontext, **kw: int) -> str:
    return api_new_agent(k, READ, prefix="path", **kw)


def works(k: Kontext, token: str) -> bool:
    with k.http() as http:
        status = http.get(PULL, headers={"Authorization": f"Bearer {token}"}).status_code
    return status == 200 and bool(k.introspect(token)["active"])


def dead(k: Kontext, minted: Minted) -> bool:
    """Inactive at introspection and refused by the gateway, and so is an MCP client's
    refresh token at introspection — checked once, no waiting, nothing changed."""
    with k.http() as http:
        headers = {"Authorization": f"Bearer {minted.token}"}
        status = http.get(PULL, headers=headers).status_code
    refresh = minted.refresh_token
    return (
        status in (401, 403)
        and k.introspect(minted.token) == {"active": False}
        and (refresh is None or k.introspect(refresh) == {"active": False})
    )


def refresh_refused(minted: Minted) -> bool:
    """The MCP client's refresh token is refused at ``/token`` (tried once: a live one
    would rotate)."""
    if minted.refresh is None:
        return True
    answer = minted.refresh()
    return answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def revoke_agent(k: Kontext, minted: Minted) -> None:
    k.ok("revoke", f"agent:{minted.agent}")


def revoke_consent(k: Kontext, minted: Minted) -> None:
    k.ok("consent", "revoke", f"agent:{minted.agent}")


def delete_agent(k: Kontext, minted: Minted) -> None:
    """Delete the agent and create another of the same name: it inherits nothing."""
    k.ok("agent", "delete", minted.agent)
    k.ok("agent", "create", minted.agent, "--allow", READ)


def end_parent(_: Kontext, minted: Minted) -> None:
    minted.end_parent()


ENDINGS: dict[str, Callable[[Kontext, Minted], None]] = {
    "agent-revoked": revoke_agent,
    "agent-deleted": delete_agent,
    "consent-revoked": revoke_consent,
    "parent-ended": end_parent,
}


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("path", list(PATHS))
def test_every_credential_dies_with_its_agent_its_consent_and_its_parent(
    world: Kontext, path: str, ending: str
) -> None:
    agent = new_agent(world)
    minted = PATHS[path](world, agent)
    try:
        assert works(world, minted.token)
        ENDINGS[ending](world, minted)
        assert dead(world, minted)
        assert refresh_refused(minted)
    finally:
        minted.cleanup()
    ended = [e for e in api_audit(world, agent) if e["event"] == "credential.revoked"]
    assert ended, "the end is audited"
    if ending == "agent-deleted":  # the namesake holds no approval either
        denied = world.run("exec", "--agent", agent, "--", "true")
        assert denied.returncode == 122 and "has not approved" in denied.stderr


def _all_dead(k: Kontext, minted: dict[str, Minted]) -> dict[str, bool]:
    return {p: dead(k, m) and refresh_refused(m) for p, m in minted.items()}


def test_every_credential_dies_with_the_login_session(own_world: Kontext) -> None:
    k = own_world
    minted = {path: mint(k, new_agent(k)) for path, mint in PATHS.items()}
    try:
        assert all(works(k, m.token) for m in minted.values())
        k.ok("logout")
        assert _all_dead(k, minted) == dict.fromkeys(PATHS, True)
    finally:
        for m in minted.values():
            m.cleanup()


def test_every_credential_dies_with_the_local_accounts_session(github: FakeGitHub) -> None:
    """Before any login the local account approves (issue 19 item 3): a login ends that
    session and all that rests on it, and a logout brings none of it back."""
    with gateway_daemon(github.url, API_KEY) as k:
        minted = {path: PATHS[path](k, new_agent(k)) for path in NO_LOGIN}
        try:
            assert all(works(k, m.token) for m in minted.values())
            k.ok("login", "--force", env={"KX_EMAIL": EMAIL}, tty=True)
            assert {p: dead(k, m) for p, m in minted.items()} == dict.fromkeys(NO_LOGIN, True)
            k.ok("logout")
            assert _all_dead(k, minted) == dict.fromkeys(NO_LOGIN, True)
        finally:
            for m in minted.values():
                m.cleanup()


def test_every_path_is_audited_listed_and_within_max_ttl(world: Kontext) -> None:
    for path, mint in PATHS.items():
        agent = new_agent(world, max_ttl=30)
        minted = mint(world, agent)  # exec asks 10 minutes by default: capped to 30 s
        try:
            claims = world.introspect(minted.token)
            assert claims["exp"] - claims["iat"] <= 30, path
            with world.control() as api:
                listed = api.get("/v1/credentials", params={"agent": agent}).json()
            assert claims["jti"] in {c["jti"] for c in listed["credentials"]}, path
            issued = [
                e
                for e in api_audit(world, agent)
                if e["event"] == "credential.issued" and e["jti"] == claims["jti"]
            ]
            assert len(issued) == 1, path
            assert set(issued[0]["policy_evaluation"]) == {
                "org_policy",
                "user_consent",
                "agent_permissions",
            }
            assert issued[0]["grant"] is not None, path
        finally:
            minted.cleanup()


@pytest.mark.slow
def test_every_credential_dies_with_its_grants_expiry(world: Kontext) -> None:
    """A grant of 60 s (the shortest): whatever was minted under it ends with it."""
    agent = api_new_agent(world, READ, prefix="path-expiring", consent=False)
    approve_over_http(world, agent, [READ], duration=60)
    # An MCP grant lasts an hour at least (tests/faults/test_clock.py moves the clock).
    minted = [mint(world, agent) for path, mint in PATHS.items() if path in ON_THE_AGENTS_GRANT]
    minted.append(mint_code(world, agent, duration=60))  # a grant of its own, of 60 s
    try:
        grant_end = max(world.introspect(m.token)["exp"] for m in minted)
        assert all(works(world, m.token) for m in minted)
        assert wait_until(lambda: all(dead(world, m) for m in minted), timeout=90)
        granted = [e for e in api_audit(world, agent) if e["event"] == "consent.granted"]
        assert grant_end <= granted[-1]["ts"] + 60 + 1
    finally:
        for m in minted:
            m.cleanup()


def test_a_consent_grant_mints_no_token(world: Kontext) -> None:
    """``kontext consent grant`` records an approval; it is not a credential."""
    agent = api_new_agent(world, READ, prefix="path-grant", consent=False)
    world.approve(agent, READ)
    events = [e["event"] for e in api_audit(world, agent)]
    assert "consent.granted" in events
    assert not [e for e in events if e.startswith("credential.")]


def test_consent_redeem_refuses_bad_input_and_wrong_verifiers(world: Kontext) -> None:
    agent = api_new_agent(world, READ, prefix="path-redeem", consent=False)
    with world.control() as api:
        garbage = api.post("/v1/consent/redeem", json={"agent": f"agent:{agent}", "code": 1})
        assert garbage.status_code == 400
        verifier, challenge = pkce()
        pushed = push(
            world,
            f"agent:{agent}",
            code_challenge=challenge,
            code_challenge_method="S256",
            scope=READ,
        )
        decided = decide(world, f"agent:{agent}", pushed.json()["request_uri"])
        code = dict(httpx.URL(decided.headers["location"]).params)["code"]
        body = {
            "agent": f"agent:{agent}",
            "code": code,
            "code_verifier": verifier[:-2] + "xx",
            "redirect_uri": "http://127.0.0.1:55555/callback/test",
        }
        wrong = api.post("/v1/consent/redeem", json=body)
        assert wrong.status_code == 403
        assert "code_verifier does not match" in wrong.json()["error"]["message"]
        again = api.post("/v1/consent/redeem", json={**body, "code_verifier": verifier})
        assert again.status_code == 403  # the code was used up by the wrong try
    assert "consent.granted" not in [e["event"] for e in api_audit(world, agent)]
