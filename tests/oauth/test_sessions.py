"""Sessions and grants mean what they say (issue 19, items 1-3).

- A second ``kontext login`` says who is logged in until when and changes nothing,
  unless ``--force`` or a "yes" at the terminal — then the old session, its grants
  and its live credentials end, each audited.
- A grant's printed and listed expiry is the effective one: never beyond the login
  session it was approved in.
- Grants approved before ``login`` (the local account's) end at login and do not
  come back after ``logout``; the audit tells the sessions apart. An approval
  given in a session and redeemed after it ended makes no grant.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time
from typing import Any

import mcp_flows
from conftest import KONTEXT, Kontext, api_audit, api_new_agent, one_line_error
from oauth_flows import REDIRECT, decide, pkce, push, query_of, redeem

READ = "github:pulls:read"


def login(k: Kontext, *args: str) -> subprocess.CompletedProcess[str]:
    return k.run("login", *args, tty=True)


def session(k: Kontext) -> dict[str, Any]:
    return dict(json.loads(k.ok("whoami", "--json").stdout))


def exec_ok(k: Kontext, agent: str) -> int:
    return k.run("exec", "--agent", agent, "--", "true").returncode


def events(k: Kontext, name: str) -> list[dict[str, Any]]:
    return [e for e in api_audit(k, n=500) if e["event"] == name]


def answer_on_a_terminal(k: Kontext, reply: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``kontext ARGS`` with a terminal as stdin, typing ``reply`` into it."""
    primary, secondary = pty.openpty()
    try:
        os.write(primary, reply.encode())
        return subprocess.run(
            [KONTEXT, *args],
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=60,
            env=k.env,
        )
    finally:
        os.close(primary)
        os.close(secondary)


def test_a_second_login_says_who_and_until_when_and_changes_nothing(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    assert login(k).returncode == 0
    who = session(k)
    agent = api_new_agent(k, READ, prefix="second-login")
    proc, env = k.token_for(agent)
    try:
        line = one_line_error(k.run("login", "--no-browser"), 4)  # no terminal: refuse
        assert f"already logged in as {who['user']} ({who['issuer']}) until" in line
        assert "1 grant and 1 live credential" in line and "kontext login --force" in line
        # Without --no-browser too: who is logged in, not merely "no terminal".
        plain = one_line_error(k.run("login"), 4)
        assert f"already logged in as {who['user']}" in plain and "--force" in plain
        # The end of input at the question is "no", not a Ctrl-C.
        ended = answer_on_a_terminal(k, "\x04", "login")
        assert ended.returncode == 4, ended.stderr
        assert "nothing changed" in ended.stderr and "cancelled" not in ended.stderr
        declined = answer_on_a_terminal(k, "n\n", "login")
        assert declined.returncode == 4, declined.stderr
        assert "Logging in ends that session: 1 grant and 1 live credential" in declined.stderr
        assert "nothing changed" in declined.stderr
        # Nothing changed: the same session, the grant, the running agent's token.
        assert session(k)["session"] == who["session"]
        assert k.introspect(env["KONTEXT_TOKEN"])["active"]
        assert agent in k.ok("consent", "list").stdout
        # The daemon refuses too, before it redeems anything (a client that skips the CLI).
        with k.control() as api:
            body = {
                "issuer": who["issuer"],
                "client_id": "kontext",
                "code": "x" * 43,
                "code_verifier": "v" * 43,
                "redirect_uri": "http://127.0.0.1:9/cb",
            }
            refused = api.post("/v1/session/login", json=body)
        assert refused.status_code == 409 and "--force" in refused.json()["error"]["message"]
        forced = login(k, "--force")
        assert forced.returncode == 0, forced.stderr
        assert not k.introspect(env["KONTEXT_TOKEN"])["active"]
    finally:
        k.close(proc)
    ended = events(k, "session.ended")[-1]
    assert ended["session"] == who["session"] and ended["reason"] == "replaced by a new login"
    assert ended["grants_revoked"] == 1 and ended["credentials_revoked"] == 1
    revoked = events(k, "consent.revoked")[-1]
    assert "session ended: replaced by a new login" in revoked["reason"]
    started = events(k, "session.started")[-1]
    assert started["replaced"] == who["session"] and started["session"] != who["session"]


def test_yes_at_the_terminal_ends_the_session_and_logs_in(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    assert login(k).returncode == 0
    first = session(k)["session"]
    api_new_agent(k, READ, prefix="yes-login")
    done = answer_on_a_terminal(k, "y\n", "login")
    assert done.returncode == 0, done.stderr
    assert "Logged in as" in done.stdout
    assert session(k)["session"] != first and session(k)["grants"] == 0


def test_a_grant_lists_and_prints_its_effective_expiry(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    local = api_new_agent(k, READ, prefix="eff-local", consent=False)
    granted = k.run("consent", "grant", f"agent:{local}", "--scope", READ, "--for", "30d", tty=True)
    assert granted.returncode == 0 and "session ends" not in granted.stdout  # local: no end
    assert login(k, "--force").returncode == 0
    ends = session(k)["expires_at"]
    agent = api_new_agent(k, READ, prefix="eff", consent=False, max_ttl=86400)
    asked = time.time() + 30 * 86400
    granted = k.run("consent", "grant", f"agent:{agent}", "--scope", READ, "--for", "30d", tty=True)
    assert granted.returncode == 0, granted.stderr
    assert time.strftime("%Y-%m-%d %H:%M", time.localtime(ends)) in granted.stdout
    assert "when your login session ends" in granted.stdout
    listed = json.loads(k.ok("consent", "list", "--json").stdout)["grants"]
    (row,) = [g for g in listed if g["agent"] == f"agent:{agent}"]
    assert row["expires_at"] == ends and abs(row["asked_expires_at"] - asked) < 120
    assert "(session end)" in k.ok("consent", "list").stdout
    # And what it allows never outlives it: a day's credential ends with the session.
    proc, env = k.token_for(agent, "--ttl", "24h")
    try:
        assert k.introspect(env["KONTEXT_TOKEN"])["exp"] <= ends
    finally:
        k.close(proc)


def test_grants_from_before_login_never_come_back_after_logout(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    local = session(k)["session"]
    agent = api_new_agent(k, READ, prefix="before-login")
    proc, env = k.token_for(agent)
    try:
        assert exec_ok(k, agent) == 0
        refused = one_line_error(k.run("login", "--no-browser"), 4)
        assert "the local account" in refused and "1 grant and 1 live credential" in refused
        assert login(k, "--force").returncode == 0
        assert not k.introspect(env["KONTEXT_TOKEN"])["active"]  # it rested on that grant
    finally:
        k.close(proc)
    logged_in = session(k)["session"]
    assert exec_ok(k, agent) == 122  # the local account's grant ended with its session
    k.approve(agent, READ)
    assert exec_ok(k, agent) == 0
    out = k.ok("logout").stdout
    assert "1 grant and 0 live credentials ended" in out
    after = session(k)
    assert after["logged_in"] is False and after["session"] not in (local, logged_in)
    denied = k.run("exec", "--agent", agent, "--", "true")
    assert denied.returncode == 122 and "has not approved" in denied.stderr
    assert k.ok("consent", "list", "--json").stdout.count("agent:") == 0
    # The audit tells the three sessions apart.
    started = [(e["session"], e.get("local", False)) for e in events(k, "session.started")]
    assert started == [(local, True), (logged_in, False), (after["session"], True)]
    ended = [(e["session"], e["reason"]) for e in events(k, "session.ended")]
    assert ended == [(local, "replaced by a new login"), (logged_in, "logged out")]
    sessions = [e["session"] for e in events(k, "consent.granted")]
    assert sessions == [local, logged_in]
    tail = k.ok("audit", "tail", "--event", "session.started").stdout
    assert tail.count("(local account)") == 2
    # Each grant a login or logout ended is in that agent's own trail.
    revoked = [e for e in k.audit(agent=agent) if e["event"] == "consent.revoked"]
    assert [e["reason"] for e in revoked] == [
        "session ended: replaced by a new login",
        "session ended: logged out",
    ]


def test_an_approval_redeemed_after_logout_makes_no_grant(fresh_kx: Kontext) -> None:
    """A code approved during a login and redeemed after ``logout`` (within its 60 s)
    belongs to the ended session: no grant in the new one, no credential — whether
    an agent client redeems it at /token, the CLI at /v1/consent/redeem, or an MCP
    client at /token."""
    k = fresh_kx
    k.start()
    assert login(k).returncode == 0
    agent = api_new_agent(k, READ, prefix="late-code", consent=False)
    client = f"agent:{agent}"
    approved = []
    for _ in range(2):
        verifier, challenge = pkce()
        pushed = push(k, client, code_challenge=challenge, code_challenge_method="S256", scope=READ)
        decided = decide(k, client, pushed.json()["request_uri"])
        approved.append((query_of(decided.headers["location"])["code"], verifier))
    f = mcp_flows.flow(mcp_flows.client_id(k))
    mcp_code = mcp_flows.approved_code(k, f, agent=agent)
    k.ok("logout")
    (code, verifier), (cli_code, cli_verifier) = approved
    late = redeem(k, code, verifier, REDIRECT.format(port=55555), client)
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant", late.text
    assert "session" in late.json()["error_description"]
    with k.control() as api:
        body = {
            "agent": client,
            "code": cli_code,
            "code_verifier": cli_verifier,
            "redirect_uri": REDIRECT.format(port=55555),
        }
        cli = api.post("/v1/consent/redeem", json=body)
    assert cli.status_code == 403 and "session" in cli.json()["error"]["message"]
    late_mcp = mcp_flows.redeem(k, f, mcp_code)
    assert late_mcp.status_code == 400 and late_mcp.json()["error"] == "invalid_grant"
    assert exec_ok(k, agent) == 122
    assert k.ok("consent", "list", "--json").stdout.count("agent:") == 0
    assert not [e for e in events(k, "consent.granted") if e["agent"]["id"] == client]
