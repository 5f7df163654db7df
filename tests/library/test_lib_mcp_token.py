"""The tool server's way (issue 13's seed: ``kontext.require("github", authInfo.token)``).

An MCP client holds a token kontext issued it for an MCP server (aud = the server's
URL, RFC 8707); the server receives it as a bearer token and hands it to the library
as ``token=``. What comes back is a credential for the gateway, exchanged from the
client's token: narrower, audited with it as parent, and dead when the client's
grant or agent is revoked.
"""

from __future__ import annotations

import httpx
import pytest
from conftest import Kontext, api_audit
from library_harness import PR, active, github, gw, verified

import kontext
from tests.oauth.mcp_flows import RESOURCE, claims, client_id, flow, tokens

__all__ = ["github", "gw"]  # module-scoped fixtures, used by name below


@pytest.fixture
def tool_server_env(gw: Kontext, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tool server started outside ``kontext exec``: no KONTEXT_TOKEN of its own,
    the daemon named by KONTEXT_URL."""
    monkeypatch.delenv("KONTEXT_TOKEN", raising=False)
    monkeypatch.setenv("KONTEXT_URL", gw.base_url)


@pytest.mark.usefixtures("tool_server_env")
def test_a_tool_server_exchanges_the_mcp_clients_token(gw: Kontext) -> None:
    received = tokens(gw, flow(client_id(gw)))["access_token"]
    theirs = claims(received)
    assert theirs["aud"] == RESOURCE  # for the MCP server, not for the gateway
    cred = kontext.require("github", token=received, target="acme/backend")
    mine = verified(gw, cred.token)
    assert cred.parent == theirs["jti"] and mine["aud"] == "github"
    assert mine["scope"] == "github:pulls:read" and mine["exp"] <= theirs["exp"]
    assert mine["act"] == {"sub": theirs["act"]["sub"], "act": theirs["act"]}
    assert mine["sub"] == theirs["sub"]
    answer = httpx.get(cred.base_url + PR, headers=cred.headers, timeout=30)
    assert answer.status_code == 200, answer.text
    with kontext.client("github", token=received, timeout=30) as gh:
        assert gh.get(PR).status_code == 200
    events = api_audit(gw, theirs["act"]["sub"].removeprefix("agent:"))
    children = [e for e in events if e["event"] == "credential.issued" and e.get("parent")]
    assert len(children) == 2 and {e["parent"] for e in children} == {theirs["jti"]}


@pytest.mark.usefixtures("tool_server_env")
def test_revoking_the_clients_grant_ends_what_the_server_exchanged(gw: Kontext) -> None:
    received = tokens(gw, flow(client_id(gw)))["access_token"]
    agent = claims(received)["act"]["sub"]
    cred = kontext.require("github", token=received)
    assert active(gw, cred.token)
    gw.ok("consent", "revoke", agent)
    assert not active(gw, cred.token)
    with pytest.raises(kontext.Denied) as refused:
        kontext.require("github", token=received)
    assert received not in str(refused.value) + repr(refused.value)
    answer = httpx.get(cred.base_url + PR, headers=cred.headers, timeout=30)
    assert answer.status_code == 403
