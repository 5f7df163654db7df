"""Attacker 3, the agent, against the second wall: kontextd, with confinement off.

With ``--no-confine`` or ``exec.confine = "off"`` the agent can reach the control
socket; the daemon then decides from kernel facts alone — the caller's ancestry
below a live exec's subreaper wrapper — that it is an agent, after every
``KONTEXT_*`` variable is unset, through ``sh -c``, ``setsid -f`` and a double
fork. Also here: the refusals' audit (rate-limited), ``--no-confine``'s audit and
audit events naming the real caller (issue 17.4).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import without_not_connected
from tests.security.confinement_harness import (
    PY,
    VIAS,
    Setup,
    api_new_agent,
    assert_nothing_changed,
    assert_refused,
    daemon_with_agents,
    events,
    state,
)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with daemon_with_agents() as agents:
        yield agents


# -- the second wall: the daemon, with confinement off -----------------------------------


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("how", ["--no-confine", "exec.confine=off"])
def test_the_daemon_refuses_an_unconfined_agent_everything_but_its_own_lease(
    setup: Setup, tmp_path: Path, via: str, how: str
) -> None:
    k = setup.k
    exec_args: tuple[str, ...] = ("--no-confine",) if how == "--no-confine" else ()
    if how != "--no-confine":
        k.ok("config", "set", "exec.confine", "off")
    try:
        before = state(k, setup.other)
        proc, results = setup.attack(tmp_path, ["raw", "cli"], via=via, exec_args=exec_args)
        # `config set` asks the daemon before it writes: refused, the file is untouched.
        assert state(k, setup.other)["config files"] == before["config files"]
    finally:
        k.ok("config", "set", "exec.confine", "auto")
    assert proc.returncode == 0, proc.stderr
    assert_refused(results, 26)
    for r in results:
        if r["name"].startswith("raw:"):
            assert r["detail"].startswith("403 ") and "agent_refused" in r["detail"], r
            assert f"inside agent:{setup.agent}" in r["detail"], r
    before["config files"] = state(k, setup.other)["config files"]  # exec.confine reset
    assert_nothing_changed(setup, before)
    refused = [
        e
        for e in events(k, "control.refused")
        if e.get("agent", {}).get("id") == f"agent:{setup.agent}"
    ]
    routes = {e["route"] for e in refused}
    assert {"POST /v1/credentials", "POST /v1/agents", "POST /v1/keys/rotate"} <= routes
    assert all(e["peer"]["pid"] and e["peer"]["kind"] == "agent" for e in refused)


@pytest.mark.parametrize("via", ["direct", "doublefork"])
@pytest.mark.parametrize("how", ["confined", "--no-confine"])
def test_an_agent_cannot_answer_a_consent_page_itself(
    setup: Setup, tmp_path: Path, via: str, how: str
) -> None:
    """Any local program may open an MCP client's consent request — for a new agent,
    with any scopes, for kontext's own gateway. An agent that loads and posts that
    page itself would leave its delegation; the daemon finds which process holds the
    loopback connection's other end and refuses a page to one inside an agent's tree."""
    k = setup.k
    exec_args: tuple[str, ...] = ("--no-confine",) if how == "--no-confine" else ()
    before = state(k, setup.other)
    proc, results = setup.attack(
        tmp_path,
        ["consent"],
        via=via,
        exec_args=exec_args,
        base_url=k.base_url,
        wide_scope="github:contents:write",
    )
    assert proc.returncode == 0, proc.stderr
    assert_refused(results, 3)
    page = results[0]["detail"]
    assert page.startswith("403 ") and f"inside agent:{setup.agent}" in page, page
    assert_nothing_changed(setup, before)  # no agent created, no grant, no credential
    refused = [e for e in events(k, "http.refused") if f"agent:{setup.agent}" in e["reason"]]
    assert {e["path"] for e in refused} >= {"/authorize"}


def test_refusals_are_audited_without_flooding_the_log(setup: Setup) -> None:
    k = setup.k
    agent = api_new_agent(k, "github:pulls:read", prefix="flood")
    script = textwrap.dedent(
        f"""
        import socket
        for _ in range(200):
            s = socket.socket(socket.AF_UNIX)
            s.connect({str(k.socket)!r})
            s.sendall(b"GET /v1/agents HTTP/1.1\\r\\nHost: k\\r\\nConnection: close\\r\\n\\r\\n")
            assert b" 403 " in s.recv(4096)
            s.close()
        """
    )
    before = len(events(k, "control.refused"))
    proc = k.run("exec", "--agent", agent, "--no-confine", "--", PY, "-c", script)
    assert proc.returncode == 0, proc.stderr
    added = events(k, "control.refused")[before:]
    assert len(added) == 1, added  # one a minute per agent and route, with the count left out
    assert added[0]["route"] == "GET /v1/agents"


def test_no_confine_is_audited(setup: Setup) -> None:
    proc = setup.k.run("exec", "--agent", setup.agent, "--no-confine", "--", "true")
    assert proc.returncode == 0 and without_not_connected(proc.stderr) == "", proc.stderr
    (event,) = [e for e in events(setup.k, "exec.unconfined")][-1:]
    assert event["reason"] == "--no-confine" and event["agent"]["id"] == f"agent:{setup.agent}"


# -- who did it: audit events name the real caller (issue 17.4) -----------------------------


def test_audit_events_name_the_real_caller(setup: Setup) -> None:
    k = setup.k
    victim = api_new_agent(k, "github:pulls:read", prefix="named")
    with k.control() as api:  # this test process is the caller, as the user
        assert api.post("/v1/revoke", json={"agent": f"agent:{victim}"}).status_code == 200
    (revoked,) = [e for e in events(k, "agent.revoked") if e["agent"]["id"] == f"agent:{victim}"]
    assert revoked["user"]["caller"] == {"pid": os.getpid(), "kind": "user"}
    # An (unconfined) agent may revoke its own credential: the reason names it and its pid.
    own = textwrap.dedent(
        f"""
        import json, os, socket
        body = json.dumps({{"jti": os.environ["KONTEXT_CREDENTIAL_ID"]}}).encode()
        s = socket.socket(socket.AF_UNIX)
        s.connect({str(k.socket)!r})
        s.sendall(b"POST /v1/revoke HTTP/1.1\\r\\nHost: k\\r\\nConnection: close\\r\\n"
                  b"Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
        print(s.recv(4096).split(b"\\r\\n")[0].decode(), os.getpid())
        """
    )
    proc = k.run("exec", "--agent", setup.agent, "--no-confine", "--", PY, "-c", own)
    status, pid = proc.stdout.split()[1], proc.stdout.split()[-1]
    assert status == "200", proc.stdout + proc.stderr
    mine = f"agent:{setup.agent}"
    ended = [e for e in events(k, "credential.revoked") if e["agent"]["id"] == mine]
    assert ended[-1]["reason"] == f"revoked by agent:{setup.agent} (pid {pid})"
