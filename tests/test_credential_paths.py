"""One notion of a credential (DESIGN.md rule 8), whichever path minted it.

Four ways a token comes to act for an agent: ``kontext exec``; an RFC 8693
exchange of the exec's credential; an agent client's exchange of the user's
login token; an agent client redeeming its consent code at ``/token``. For each,
every way a credential must end is tried — the agent revoked, the consent
revoked, the parent ended, the login session ended, the grant expired — and
right after it, introspection says inactive and the gateway (in front of a fake
GitHub) refuses. Each is also audited, listed, and within the agent's max TTL.
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


def mint_code(k: Kontext, agent: str) -> Minted:
    client = f"agent:{agent}"
    verifier, challenge = pkce()
    pushed = push(
        k,
        client,
        code_challenge=challenge,
        code_challenge_method="S256",
        scope=READ,
        state=secrets.token_urlsafe(8),
    )
    assert pushed.status_code == 201, pushed.text
    decided = decide(k, client, pushed.json()["request_uri"])
    query = dict(httpx.URL(decided.headers["location"]).params)
    answer = redeem(k, query["code"], verifier, "http://127.0.0.1:55555/callback/test", client)
    assert answer.status_code == 200, answer.text
    token = str(answer.json()["access_token"])
    # Its parent is its grant: /revoke of the token itself is the nearest "parent ends".
    return Minted(agent, token, lambda: _revoke(k, token), lambda: None)


PATHS = {
    "exec": mint_exec,
    "exchange-of-exec": mint_exec_exchange,
    "exchange-of-user-token": mint_user_exchange,
    "consent-code": mint_code,
}


def new_agent(k: Kontext, **kw: int) -> str:
    return api_new_agent(k, READ, prefix="path", **kw)


def works(k: Kontext, token: str) -> bool:
    with k.http() as http:
        status = http.get(PULL, headers={"Authorization": f"Bearer {token}"}).status_code
    return status == 200 and bool(k.introspect(token)["active"])


def dead(k: Kontext, token: str) -> bool:
    """Inactive at introspection and refused by the gateway — checked once, no waiting."""
    with k.http() as http:
        status = http.get(PULL, headers={"Authorization": f"Bearer {token}"}).status_code
    return status in (401, 403) and k.introspect(token) == {"active": False}


def revoke_agent(k: Kontext, minted: Minted) -> None:
    k.ok("revoke", f"agent:{minted.agent}")


def revoke_consent(k: Kontext, minted: Minted) -> None:
    k.ok("consent", "revoke", f"agent:{minted.agent}")


def end_parent(_: Kontext, minted: Minted) -> None:
    minted.end_parent()


ENDINGS: dict[str, Callable[[Kontext, Minted], None]] = {
    "agent-revoked": revoke_agent,
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
        assert dead(world, minted.token)
    finally:
        minted.cleanup()
    ended = [e for e in api_audit(world, agent) if e["event"] == "credential.revoked"]
    assert ended, "the end is audited"


def test_every_credential_dies_with_the_login_session(own_world: Kontext) -> None:
    k = own_world
    minted = {path: mint(k, new_agent(k)) for path, mint in PATHS.items()}
    try:
        assert all(works(k, m.token) for m in minted.values())
        k.ok("logout")
        assert {p: dead(k, m.token) for p, m in minted.items()} == dict.fromkeys(PATHS, True)
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
    minted = [mint(world, agent) for path, mint in PATHS.items() if path != "consent-code"]
    try:
        grant_end = max(world.introspect(m.token)["exp"] for m in minted)
        assert all(works(world, m.token) for m in minted)
        assert wait_until(lambda: all(dead(world, m.token) for m in minted), timeout=90)
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
