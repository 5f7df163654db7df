"""``kontext.client`` / ``async_client``: the gateway, with a credential of its own per request.

The fake GitHub records what reached it (never a kontext token, always its own
key); the daemon's audit records which credential made each call (``api.call``
carries the ``jti``) and which authority each credential came from.
"""

from __future__ import annotations

import pytest
from conftest import Kontext, api_audit, api_new_agent
from library_harness import PR, READ_WRITE, RunningAgent, active, github, gw
from upstream.fake_github import API_KEY, FakeGitHub

__all__ = ["github", "gw"]  # module-scoped fixtures, used by name below


def calls_and_parents(k: Kontext, agent: str) -> tuple[list[str], dict[str, str]]:
    """The ``jti`` of each gateway call, and each exchanged credential's parent."""
    events = api_audit(k, agent)
    calls = [e["jti"] for e in events if e["event"] == "api.call"]
    parents = {e["jti"]: e.get("parent") for e in events if e["event"] == "credential.issued"}
    return calls, parents


def test_client_calls_the_gateway_with_a_fresh_credential_per_request(
    gw: Kontext, github: FakeGitHub
) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="client")
    before = len(github.api_calls())
    with RunningAgent(gw, agent, "--target", "acme/backend") as child:
        out = child.ask("client", path=PR, n=5, args={"scopes": ["pulls:read"]})
    assert out["statuses"] == [200] * 5
    assert {t["title"] for t in out["titles"]} == {"Add the gateway"}
    reached = github.api_calls()[before:]
    assert [s.path for s in reached] == [PR] * 5
    assert all(s.headers["Authorization"] == f"Bearer {API_KEY}" for s in reached)
    calls, parents = calls_and_parents(gw, agent)
    assert len(calls) == 5 and len(set(calls)) == 5  # one credential per request
    assert child.jti not in calls
    assert all(parents[jti] == child.jti for jti in calls)


def test_async_client_under_gather(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="aclient")
    with RunningAgent(gw, agent, "--target", "acme/backend") as child:
        out = child.ask("async_client", path=PR, n=8)
    assert out["statuses"] == [200] * 8
    calls, parents = calls_and_parents(gw, agent)
    assert len(set(calls)) == 8 and all(parents[jti] == child.jti for jti in calls)


def test_the_client_sends_credentials_only_to_its_gateway(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="offgw")
    with RunningAgent(gw, agent) as child:
        for url in (
            "https://api.github.com/repos/acme/backend/pulls/42",
            f"{gw.base_url}/gw/slack/chat.postMessage",
            f"{gw.base_url}/token",
        ):
            out = child.ask("off_gateway", url=url)
            assert out["error"] == "InvalidRequest", out
            assert "sends credentials only to" in out["message"]
    exchanged = [
        e
        for e in api_audit(gw, agent)
        if e["event"] == "credential.issued" and e.get("parent") == child.jti
    ]
    assert exchanged == []  # refused before any credential was minted


@pytest.mark.slow
def test_a_401_from_the_gateway_for_an_expired_credential_is_retried_once(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="expiry")
    with RunningAgent(gw, agent, "--target", "acme/backend") as child:
        out = child.ask("expire_then_call", path=PR)
    assert out["status"] == 200
    assert out["attempts"] == 2 and out["tokens"][0] != out["tokens"][1]
    assert not active(gw, out["tokens"][0])
    refused = [e for e in api_audit(gw) if e["event"] == "api.denied" and e["status"] == 401]
    assert refused, "the gateway should have refused the expired credential first"
