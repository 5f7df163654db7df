"""RFC 8693 token exchange at ``/token``: the contract the ``kontext`` library builds on.

A real daemon whose GitHub integration points at the fake GitHub; tokens are
checked with joserfc against the published JWKS, and every promise is tried from
where the agent stands — holding its exec credential (``KONTEXT_TOKEN``), or as an
agent client holding the user's login token.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import (
    Kontext,
    api_audit,
    api_new_agent,
    approve_over_http,
    gateway_daemon,
    wait_until,
)
from joserfc import jwt
from joserfc.jwk import KeySet
from oauth_flows import authorized_code, client_secret, redeem
from upstream.fake_github import API_KEY, FakeGitHub

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
READ, WRITE = "github:pulls:read", "github:pulls:write"
PULL = "/gw/github/repos/acme/backend/pulls/1"
OTHER = "/gw/github/repos/acme/other/pulls/1"


@pytest.fixture(scope="module")
def gw() -> Iterator[Kontext]:
    with FakeGitHub() as fake, gateway_daemon(fake.url, API_KEY) as k:
        yield k


@pytest.fixture(scope="module")
def alice() -> Iterator[Kontext]:
    """A daemon of its own where alice@acme.com has logged in (embedded issuer)."""
    with FakeGitHub() as fake, gateway_daemon(fake.url, API_KEY) as k:
        k.ok("login", env={"KX_EMAIL": "alice@acme.com"}, tty=True)
        yield k


def claims_of(k: Kontext, value: str) -> dict[str, Any]:
    decoded = jwt.decode(value, KeySet.import_key_set(k.jwks()), algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    return dict(decoded.claims)


def exchange(k: Kontext, subject: str, client: str | None = None, **form: str) -> httpx.Response:
    """POST /token with the exchange grant; ``client``: authenticate as that agent."""
    auth = (client.replace(":", "%3A"), client_secret(k)) if client else None
    data = {
        "grant_type": EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS,
        **form,
    }
    with k.http() as http:
        return http.post("/token", data=data, auth=auth)


def gateway(k: Kontext, token: str, path: str = PULL) -> int:
    with k.http() as http:
        return http.get(path, headers={"Authorization": f"Bearer {token}"}).status_code


def active(k: Kontext, token: str) -> bool:
    return bool(k.introspect(token)["active"])


def error(answer: httpx.Response) -> tuple[str, str]:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    return body["error"], body["error_description"]


class Held:
    """``kontext exec`` holding a credential open, with its child's token."""

    def __init__(self, k: Kontext, agent: str, *args: str) -> None:
        self.k = k
        self.proc, env = k.token_for(agent, *args)
        self.token = env["KONTEXT_TOKEN"]
        self.jti = env["KONTEXT_CREDENTIAL_ID"]

    def close(self) -> None:
        self.k.close(self.proc)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_the_answer_follows_rfc_8693_and_the_token_verifies(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, WRITE, prefix="x-answer")
    with Held(gw, agent) as held:
        answer = exchange(gw, held.token, scope=READ)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        # RFC 8693 §2.2.1: issued_token_type, token_type, expires_in, scope; no refresh.
        assert body["issued_token_type"] == ACCESS and body["token_type"] == "Bearer"
        assert body["scope"] == READ and body["expires_in"] == 60  # the default TTL
        assert "refresh_token" not in body
        assert answer.headers["Cache-Control"] == "no-store"
        claims = claims_of(gw, body["access_token"])
        parent = claims_of(gw, held.token)
        assert claims["sub"] == parent["sub"] and claims["scope"] == READ
        assert claims["exp"] - claims["iat"] == 60 and claims["aud"] == "github"
        # RFC 8693 §4.1: the agent acts now, by delegation from the exec's credential.
        assert claims["act"] == {"sub": f"agent:{agent}", "act": {"sub": f"agent:{agent}"}}
        assert claims["client_id"] == f"agent:{agent}"
        assert gateway(gw, body["access_token"]) == 200


def test_scope_only_shrinks_and_a_widening_is_refused_and_audited(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, WRITE, prefix="x-scope")
    with Held(gw, agent, "--scope", READ) as held:
        code, why = error(exchange(gw, held.token, scope=f"{READ} {WRITE}"))
        assert code == "invalid_scope" and WRITE in why
        narrow = exchange(gw, held.token).json()["access_token"]  # default: all it holds
        assert claims_of(gw, narrow)["scope"] == READ
        with gw.http() as http:
            write = http.post(
                f"{PULL}/reviews", headers={"Authorization": f"Bearer {narrow}"}, json={}
            )
        assert write.status_code == 403
    denied = [e for e in api_audit(gw, agent) if e["event"] == "credential.denied"]
    assert denied[-1]["parent"] == held.jti and denied[-1]["kind"] == "exchange"
    assert WRITE in denied[-1]["reason"]


def test_a_target_only_narrows(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, prefix="x-target")
    with Held(gw, agent, "--target", "acme/backend") as held:
        code, why = error(exchange(gw, held.token, target="acme/other"))
        assert code == "invalid_target" and "acme/backend" in why
        kept = exchange(gw, held.token).json()["access_token"]  # no target: it keeps its own
        assert claims_of(gw, kept)["target"] == "acme/backend"
        assert gateway(gw, kept) == 200 and gateway(gw, kept, OTHER) == 403
    with Held(gw, agent) as untargeted:  # no target yet: an exchange may add one
        narrowed = exchange(gw, untargeted.token, target="acme/backend").json()["access_token"]
        assert gateway(gw, narrowed) == 200 and gateway(gw, narrowed, OTHER) == 403


def test_resource_narrows_to_one_integration(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, "slack:chat:write", prefix="x-resource")
    with Held(gw, agent) as held:
        by_url = exchange(gw, held.token, resource=f"{gw.base_url}/gw/github")
        assert by_url.status_code == 200, by_url.text
        claims = claims_of(gw, by_url.json()["access_token"])
        assert claims["aud"] == "github" and claims["scope"] == READ
        by_name = exchange(gw, held.token, audience="slack").json()
        assert by_name["scope"] == "slack:chat:write"
        assert error(exchange(gw, held.token, resource="https://evil.example/gw/github"))[0] == (
            "invalid_target"
        )
        mixed = exchange(gw, held.token, resource="github", scope="slack:chat:write")
        assert error(mixed)[0] == "invalid_target"


def test_ttl_defaults_to_60s_and_never_outgrows_parent_or_max_ttl(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, prefix="x-ttl", max_ttl=120)
    with Held(gw, agent, "--ttl", "90s") as held:
        parent = claims_of(gw, held.token)
        short = exchange(gw, held.token, ttl="20s").json()
        assert short["expires_in"] == 20
        seconds = exchange(gw, held.token, ttl="30").json()
        assert seconds["expires_in"] == 30
        # Asked for more than the parent has left: cut to the parent's end.
        long = claims_of(gw, exchange(gw, held.token, ttl="100s").json()["access_token"])
        assert long["exp"] <= parent["exp"]
        code, why = error(exchange(gw, held.token, ttl="10m"))  # over the agent's max TTL
        assert code == "invalid_request" and "denied by agent permissions" in why
        assert error(exchange(gw, held.token, ttl="5x"))[0] == "invalid_request"


def test_a_layer_refusal_names_the_layer(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, WRITE, prefix="x-layer", max_ttl=60)
    with Held(gw, agent) as held:
        answer = exchange(gw, held.token, ttl="2m")
        code, why = error(answer)
        assert code == "invalid_request" and answer.json()["denied_by"] == "agent_permissions"
        assert why.startswith(f"denied by agent permissions: agent:{agent} may hold")
    denied = [e for e in api_audit(gw, agent) if e["event"] == "credential.denied"]
    assert denied[-1]["policy_evaluation"]["agent_permissions"] == "deny"
    assert denied[-1]["parent"] == held.jti


def test_org_policy_applies_to_exchanges(gw: Kontext) -> None:
    policy_d = gw.home / "config" / "policy.d"
    policy_d.mkdir(parents=True, exist_ok=True)
    rules = policy_d / "exchange.cedar"
    rules.write_text(
        '@id("baseline")\npermit (principal, action, resource);\n'
        '@id("no-secret-repo")\nforbid (principal, action, resource)\n'
        '  when { resource.target == "acme/secret" };\n'
    )
    try:
        agent = api_new_agent(gw, READ, prefix="x-org")
        with Held(gw, agent) as held:  # no target: the org allows the exec

            def refused() -> bool:
                answer = exchange(gw, held.token, target="acme/secret")
                return answer.status_code == 400 and answer.json().get("denied_by") == (
                    "org_policy"
                )

            assert wait_until(refused, timeout=10)  # the daemon picks the file up
            why = error(exchange(gw, held.token, target="acme/secret"))[1]
            assert why.startswith("denied by org policy: policy no-secret-repo forbids")
            assert exchange(gw, held.token, target="acme/backend").status_code == 200
    finally:
        rules.unlink()


def test_an_agent_client_exchanges_the_users_token_within_its_grant(alice: Kontext) -> None:
    gw = alice
    agent = api_new_agent(gw, READ, WRITE, prefix="x-user", consent=False)
    approve_over_http(gw, agent, [READ], target="acme/backend")
    user = login_token(gw)
    client = f"agent:{agent}"
    assert exchange(gw, user).status_code == 401  # the agent client must authenticate
    no_target = exchange(gw, user, client, scope=READ)
    code, why = error(no_target)
    assert code == "invalid_request" and no_target.json()["denied_by"] == "user_consent"
    assert "only on target acme/backend" in why
    wider = exchange(gw, user, client, scope=WRITE, target="acme/backend")
    assert wider.json()["denied_by"] == "user_consent"
    ok = exchange(gw, user, client, scope=READ, target="acme/backend")
    assert ok.status_code == 200, ok.text
    token = ok.json()["access_token"]
    claims = claims_of(gw, token)
    assert claims["act"] == {"sub": client} and claims["target"] == "acme/backend"
    assert gateway(gw, token) == 200 and gateway(gw, token, OTHER) == 403
    other = api_new_agent(gw, READ, prefix="x-user-other", consent=False)
    foreign = exchange(gw, user, f"agent:{other}", scope=READ, target="acme/backend")
    assert foreign.json()["denied_by"] == "user_consent"  # another agent: no grant


def login_token(k: Kontext) -> str:
    """An access token of the user's own CLI client (``kontext``), as login gets one."""
    code, verifier, redirect = authorized_code(k)
    answer = redeem(k, code, verifier, redirect)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def test_every_mint_is_audited_with_its_parent_and_listed(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, prefix="x-listed")
    with Held(gw, agent) as held:
        first = exchange(gw, held.token).json()["access_token"]
        second = exchange(gw, first, ttl="15s").json()["access_token"]
        jtis = [claims_of(gw, t)["jti"] for t in (first, second)]
        claims = claims_of(gw, second)
        assert claims["act"]["act"]["act"] == {"sub": f"agent:{agent}"}  # three actors deep
        with gw.control() as api:
            listed = api.get("/v1/credentials", params={"agent": agent}).json()["credentials"]
        by_jti = {c["jti"]: c for c in listed}
        assert by_jti[held.jti]["kind"] == "exec"
        assert by_jti[jtis[0]]["kind"] == "exchange" and by_jti[jtis[0]]["parent"] == held.jti
        assert by_jti[jtis[1]]["parent"] == jtis[0]
        issued = {e["jti"]: e for e in api_audit(gw, agent) if e["event"] == "credential.issued"}
        assert issued[jtis[0]]["parent"] == held.jti and issued[jtis[1]]["parent"] == jtis[0]
        assert issued[jtis[1]]["expires_in"] == "15s"
        assert set(issued[jtis[1]]["policy_evaluation"].values()) == {"allow"}
        assert issued[jtis[1]]["grant"] == issued[held.jti]["grant"] is not None


def test_revoke_ends_a_token_and_everything_exchanged_from_it(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, prefix="x-revoke")
    with Held(gw, agent) as held:
        first = exchange(gw, held.token).json()["access_token"]
        second = exchange(gw, first).json()["access_token"]
        with gw.http() as http:
            assert http.post("/revoke", data={"token": first}).status_code == 200
        assert not active(gw, first) and not active(gw, second)
        assert gateway(gw, second) == 403
        assert active(gw, held.token)  # the parent lives on
    ended = {e["jti"]: e for e in api_audit(gw, agent) if e["event"] == "credential.revoked"}
    second_jti = claims_of_unverified(second)["jti"]
    assert ended[second_jti]["parent"] == claims_of_unverified(first)["jti"]
    assert "ended" in ended[second_jti]["reason"]


def claims_of_unverified(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_delegation_depth_is_bounded(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, prefix="x-depth")
    with Held(gw, agent) as held:
        token, depth = held.token, 1
        while True:
            answer = exchange(gw, token)
            if answer.status_code != 200:
                break
            token, depth = answer.json()["access_token"], depth + 1
        assert depth == 8 and "8 deep" in error(answer)[1]


def test_bad_requests_are_rfc_6749_errors(gw: Kontext) -> None:
    agent = api_new_agent(gw, READ, prefix="x-bad")
    with Held(gw, agent) as held:
        assert error(exchange(gw, "a.b.c"))[0] == "invalid_grant"
        wrong_type = exchange(gw, held.token, subject_token_type="urn:x")
        assert error(wrong_type)[0] == "invalid_request"
        actor = exchange(gw, held.token, actor_token=held.token, actor_token_type=ACCESS)
        assert error(actor)[0] == "invalid_request"
        assert error(exchange(gw, held.token, target="../x"))[0] == "invalid_target"
        for scope in ("github:pulls:delete", "nocolon", "github:pulls:read\x1b[31m", "x" * 5000):
            code, why = error(exchange(gw, held.token, scope=scope))
            assert code == "invalid_scope" and "\x1b" not in why and len(why) < 400
        other = api_new_agent(gw, READ, prefix="x-bad-other")
        impostor = exchange(gw, held.token, f"agent:{other}")
        assert error(impostor)[0] == "invalid_request"


def test_a_gateway_resource_that_cannot_forward_is_not_connected(gw: Kontext) -> None:
    """``resource`` = an integration's gateway URL (RFC 8707) asks for a token to call
    there; when the integration has no upstream connection, nothing could be forwarded:
    ``invalid_target`` with ``not_connected`` naming it (the library's NotConnected), and
    nothing is minted. Naming only the integration (``audience``) is not held to this."""
    agent = api_new_agent(gw, READ, "slack:chat:write", prefix="x-unconnected")
    with Held(gw, agent) as held:
        refused = exchange(gw, held.token, resource=f"{gw.base_url}/gw/slack")
        assert refused.status_code == 400, refused.text
        assert refused.json() == {
            "error": "invalid_target",
            "error_description": "slack is not connected: run 'kontext integration connect slack'",
            "not_connected": "slack",
        }
        assert exchange(gw, held.token, resource=f"{gw.base_url}/gw/github").status_code == 200
        assert exchange(gw, held.token, audience="slack").status_code == 200
    minted = [
        e
        for e in api_audit(gw, agent)
        if e["event"] == "credential.issued" and e.get("kind") == "exchange"
    ]
    assert len(minted) == 2
