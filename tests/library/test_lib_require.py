"""``kontext.require`` in a long-running child of ``kontext exec``, against a real daemon.

The child (tests/library/library_agent.py) imports the library like any agent and holds
its exec's credential as the authority; this test stands outside, as a resource
server would, and checks every token with joserfc, introspection and the audit.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Kontext, api_audit, api_new_agent, wait_until
from joserfc.jwk import KeySet
from library_harness import PR, READ_WRITE, RunningAgent, active, github, gw, verified

import kontext

__all__ = ["github", "gw"]  # module-scoped fixtures, used by name below

LAYERS_ALLOW = {"org_policy": "allow", "user_consent": "allow", "agent_permissions": "allow"}
POLICY = """
@id("baseline")
permit (principal, action, resource);
@id("no-production-writes")
forbid (principal, action in Action::"write", resource)
when { resource.target like "*/production-*" };
"""


def issued_events(k: Kontext, agent: str) -> dict[str, dict]:
    return {e["jti"]: e for e in api_audit(k, agent) if e["event"] == "credential.issued"}


def test_a_long_running_child_gets_a_hundred_distinct_narrower_credentials(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="loop")
    with RunningAgent(gw, agent, "--target", "acme/backend") as child:
        keys = KeySet.import_key_set(gw.jwks())
        parent = verified(gw, child.token, keys)
        creds = child.ask("require", n=100, args={"scopes": ["pulls:read"]})["creds"]
        assert len({c["jti"] for c in creds}) == 100
        assert len({c["token"] for c in creds}) == 100
        for cred in creds:
            claims = verified(gw, cred["token"], keys)
            assert claims["jti"] == cred["jti"] != parent["jti"]
            # Narrower than or equal to the parent: scopes, target, lifetime, same user.
            assert claims["scope"] == "github:pulls:read"
            assert set(claims["scope"].split()) <= set(parent["scope"].split())
            assert claims["target"] == parent["target"] == "acme/backend"
            assert claims["exp"] <= parent["exp"]
            assert claims["exp"] - claims["iat"] <= 60  # the per-request default
            assert claims["sub"] == parent["sub"]
            # RFC 8693 §4.1: the current actor on top, who delegated to it nested below.
            assert claims["act"] == {"sub": f"agent:{agent}", "act": parent["act"]}
            assert (cred["agent"], cred["parent"]) == (f"agent:{agent}", parent["jti"])
            assert cred["base_url"] == f"{gw.base_url}/gw/github" == child.env["GITHUB_API_URL"]
            assert cred["headers_ok"] and cred["token"] not in cred["repr"]
        audited = issued_events(gw, agent)
        for cred in creds:
            event = audited[cred["jti"]]
            assert (event["parent"], event["kind"]) == (parent["jti"], "exchange")
            assert event["scopes"] == ["github:pulls:read"]
            assert event["target"] == "acme/backend"
            assert event["expires_in"] == "60s" and "ttl_asked" not in event  # as asked
            assert event["policy_evaluation"] == LAYERS_ALLOW
        assert all(active(gw, c["token"]) for c in creds[-3:])


def test_widening_scopes_target_or_ttl_is_denied_naming_the_layer(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="widen", max_ttl=600)
    exec_args = ("--scope", "github:pulls:read", "--target", "acme/backend", "--ttl", "2m")
    with RunningAgent(gw, agent, *exec_args) as child:
        scope = child.ask("require", args={"scopes": ["pulls:write"]})
        assert (scope["error"], scope["layer"]) == ("Denied", "delegation")
        assert scope["message"].startswith("denied by delegation: scopes can only shrink")
        assert "github:pulls:write" in scope["message"]
        target = child.ask("require", args={"target": "acme/frontend"})
        assert (target["error"], target["layer"]) == ("Denied", "delegation")
        assert "acme/backend" in target["message"]
        ttl = child.ask("require", args={"ttl": "1h"})
        assert (ttl["error"], ttl["layer"]) == ("Denied", "agent_permissions")
        assert ttl["message"] == (
            f"denied by agent permissions: agent:{agent} may hold credentials for at most "
            "10m, not 1h"
        )
        # Within the agent's maximum but past the parent's end: it ends with its parent,
        # and the audit keeps what was asked beside what was given.
        longer = child.ask("require", args={"ttl": "5m"})["creds"][0]
        assert longer["expires_at"] <= verified(gw, child.token)["exp"]
        for refusal in (scope, target, ttl):
            assert child.token not in refusal["message"] + refusal["repr"]
    events = api_audit(gw, agent)
    denied = [e for e in events if e["event"] == "credential.denied"]
    assert len(denied) == 3 and {e["parent"] for e in denied} == {child.jti}
    [cut] = [e for e in events if e["event"] == "credential.issued" and e["jti"] == longer["jti"]]
    assert cut["ttl_asked"] == "300s" and int(cut["expires_in"].rstrip("s")) <= 120
    # The same refusal from the CLI is the same line, after "kontext: ".
    cli = gw.run("exec", "--agent", agent, "--ttl", "1h", "--", "true")
    assert cli.returncode != 0 and cli.stderr.strip() == f"kontext: {ttl['message']}"


def test_the_default_ttl_ends_with_a_parent_that_has_less_left(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="short")
    with RunningAgent(gw, agent, "--ttl", "20s") as child:
        cred = child.ask("require")["creds"][0]
        parent, claims = verified(gw, child.token), verified(gw, cred["token"])
    assert claims["exp"] <= parent["exp"] and claims["exp"] - claims["iat"] < 60
    assert cred["expires_at"] == claims["exp"]
    [event] = [e for e in issued_events(gw, agent).values() if e.get("parent") == child.jti]
    assert event["ttl_asked"] == "60s"  # the per-request default, cut to the parent's end


def test_org_policy_applies_to_the_narrowed_request(gw: Kontext) -> None:
    policy_d = gw.home / "config" / "policy.d"
    policy_d.mkdir(parents=True, exist_ok=True)
    (policy_d / "10-production.cedar").write_text(POLICY)
    gw.ok("policy", "reload")
    try:
        agent = api_new_agent(gw, *READ_WRITE, prefix="policy")
        with RunningAgent(gw, agent) as child:
            refused = child.ask(
                "require", args={"scopes": ["pulls:write"], "target": "acme/production-api"}
            )
            allowed = child.ask("require", args={"scopes": ["pulls:write"], "target": "acme/web"})
        assert (refused["error"], refused["layer"]) == ("Denied", "org_policy")
        assert refused["message"].startswith(
            "denied by org policy: policy no-production-writes forbids github:pulls:write"
        )
        assert allowed["creds"][0]["target"] == "acme/web"
    finally:
        shutil.rmtree(policy_d)
        gw.ok("policy", "reload")


def test_revoking_the_agent_fails_the_next_require_and_gateway_call_at_once(
    gw: Kontext,
) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="revoked")
    with RunningAgent(gw, agent, "--target", "acme/backend") as child:
        cred = child.ask("require")["creds"][0]
        call = {"base_url": cred["base_url"], "token": cred["token"], "path": PR}
        assert child.ask("call", **call)["status"] == 200
        gw.ok("revoke", f"agent:{agent}")
        after = child.ask("require")
        assert (after["error"], after["layer"]) == ("Denied", "delegation")
        assert "KONTEXT_TOKEN is no longer active" in after["message"]
        refused = child.ask("call", **call)
        assert refused["status"] == 403
        assert "credential revoked" in refused["body"]["message"]
        assert not active(gw, cred["token"])


def test_the_exec_ending_kills_every_credential_derived_from_it(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="ending")
    child = RunningAgent(gw, agent)
    creds = child.ask("require", n=5)["creds"] + child.ask("gather", n=3)["creds"]
    assert all(active(gw, c["token"]) for c in creds)
    assert child.close() == 0
    assert wait_until(lambda: not any(active(gw, c["token"]) for c in creds), timeout=30)
    revoked = {e["jti"]: e for e in api_audit(gw, agent) if e["event"] == "credential.revoked"}
    for cred in creds:
        assert revoked[cred["jti"]]["parent"] == child.jti
        assert f"its parent {child.jti} ended" in revoked[cred["jti"]]["reason"]


def test_a_with_blocks_credential_is_inactive_right_after_the_block(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="with")
    with RunningAgent(gw, agent) as child:
        for op in ("with", "async_with"):
            out = child.ask(op, args={"scopes": ["pulls:write"]})
            assert out["inside"] is True, op
            assert out["cred"]["revoked"] is True and "revoked" in out["cred"]["repr"]
            assert not active(gw, out["cred"]["token"]), op
            ended = [
                e
                for e in api_audit(gw, agent)
                if e["event"] == "credential.revoked" and e["jti"] == out["cred"]["jti"]
            ]
            assert len(ended) == 1 and ended[0]["parent"] == child.jti
        assert active(gw, child.token)  # the authority lives on


def test_a_credential_left_to_run_out_is_audited_expired_with_its_parent(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="expiry")
    with RunningAgent(gw, agent) as child:
        cred = child.ask("require", args={"ttl": "10s"})["creds"][0]

        def expired() -> list[dict]:
            return [
                e
                for e in api_audit(gw, agent)
                if e["event"] == "credential.expired" and e["jti"] == cred["jti"]
            ]

        assert wait_until(expired, timeout=90)  # the reaper's pace, not a timing
        [event] = expired()
        assert (event["parent"], event["kind"]) == (child.jti, "exchange")
        assert not active(gw, cred["token"]) and active(gw, child.token)


def test_asyncio_gather_of_32_arequire_calls(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="gather")
    with RunningAgent(gw, agent) as child:
        creds = child.ask("gather", n=32, args={"scopes": ["github:pulls:read"]})["creds"]
        keys = KeySet.import_key_set(gw.jwks())
        assert len({c["jti"] for c in creds}) == 32
        for cred in creds:
            claims = verified(gw, cred["token"], keys)
            assert claims["scope"] == "github:pulls:read" and cred["parent"] == child.jti
    assert {e["parent"] for e in issued_events(gw, agent).values() if "parent" in e} == {child.jti}


def test_a_token_handed_in_is_exchanged_across_event_loops_and_threads(
    gw: Kontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool server's way: ``token=`` is the bearer token a request brought, the daemon
    is named by KONTEXT_URL, calls come from several event loops and threads. Nothing
    may leak between them (pytest turns an unclosed socket or transport into an error)."""
    agent = api_new_agent(gw, *READ_WRITE, prefix="server")
    proc, env = gw.token_for(agent, "--target", "acme/backend")
    try:
        monkeypatch.delenv("KONTEXT_TOKEN", raising=False)
        monkeypatch.setenv("KONTEXT_URL", gw.base_url)
        handed = env["KONTEXT_TOKEN"]
        got = [asyncio.run(kontext.arequire("github", token=handed)) for _ in range(2)]
        with ThreadPoolExecutor(4) as pool:
            got += pool.map(lambda _: kontext.require("github", token=handed), range(8))
        assert len({c.jti for c in got}) == 10
        assert {c.parent for c in got} == {env["KONTEXT_CREDENTIAL_ID"]}
        assert all(c.target == "acme/backend" and active(gw, c.token) for c in got)
        gc.collect()
    finally:
        gw.close(proc)


FORKING = """
import os, kontext
kontext.require("github")  # the parent now holds a kept-alive connection
pid = os.fork()
jtis = {kontext.require("github").jti for _ in range(20)}
if pid == 0:
    os._exit(0 if len(jtis) == 20 else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), len(jtis))
"""


def test_a_forked_worker_takes_its_own_connections(gw: Kontext) -> None:
    """A pre-fork server (gunicorn-style): after fork, parent and child each keep
    asking over connections of their own, never one socket read by both."""
    agent = api_new_agent(gw, *READ_WRITE, prefix="forked")
    proc = gw.run("exec", "--agent", agent, "--", sys.executable, "-c", FORKING)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "20"]
