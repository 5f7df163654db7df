"""The library inside the default ``kontext exec``, which confines its child.

A confined child cannot see kontext's files: not the control socket, not the runtime
dir where the daemon publishes its port (``http.json``). The library must not need
them: it reaches the daemon through ``KONTEXT_URL`` (loopback HTTP), which exec sets.
These tests stand where the agent stands — inside the confinement — and use every
path of the public API from there.
"""

from __future__ import annotations

import pytest
from conftest import Kontext, api_audit, api_new_agent, confinement_missing
from library_harness import PR, READ_WRITE, RunningAgent, active, github, gw, verified

__all__ = ["github", "gw"]  # module-scoped fixtures, used by name below


MISSING = confinement_missing()


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_the_library_works_inside_the_default_confined_exec(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="confined")
    with RunningAgent(gw, agent, "--target", "acme/backend") as child:
        hidden = {
            "control socket": str(gw.socket),
            "port file": str(gw.runtime / "http.json"),
            "database": str(gw.database),
        }
        sees = child.ask("sees", paths=hidden)
        # Confined: kontext's files are out of reach (the runtime dir is an empty
        # mount), in a user namespace of its own.
        assert sees["seen"] == dict.fromkeys(hidden, False)
        assert sees["uid_map"] != ["0", "0", "4294967295"]
        assert child.env["KONTEXT_URL"] == gw.base_url
        # Every way in: its own KONTEXT_TOKEN, token= (the daemon found by KONTEXT_URL
        # alone: http.json is hidden), a with block, gather, the gateway clients.
        own = child.ask("require", n=3, args={"scopes": ["pulls:read"]})["creds"]
        handed = child.ask("require", args={"token": child.token, "ttl": "30s"})["creds"]
        for cred in own + handed:
            claims = verified(gw, cred["token"])
            assert cred["parent"] == child.jti and claims["target"] == "acme/backend"
        block = child.ask("with")
        assert block["inside"] is True and not active(gw, block["cred"]["token"])
        assert len({c["jti"] for c in child.ask("gather", n=8)["creds"]}) == 8
        assert child.ask("client", path=PR, n=2)["statuses"] == [200, 200]
        assert child.ask("async_client", path=PR, n=2)["statuses"] == [200, 200]
    events = api_audit(gw, agent)
    assert not [e for e in events if e["event"] == "exec.unconfined"]
    exchanged = [e for e in events if e["event"] == "credential.issued" and e.get("parent")]
    assert len(exchanged) == 3 + 1 + 1 + 8 + 2 + 2
    assert {e["parent"] for e in exchanged} == {child.jti}
