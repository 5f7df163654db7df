"""Names as people type them, and the live credentials they can see and revoke.

A mistyped agent is "no agent named …; did you mean …?" everywhere (exit 3; exec
125), never an OAuth error or a denial; ``agent:NAME`` and ``NAME`` are the same
everywhere. ``kontext credential list`` (and ``agent show``) show what is alive —
the jti to revoke, its process, target and expiry — and revoking one that had
already ended says so, with an exit status of its own.
"""

from __future__ import annotations

import json

from conftest import Kontext, api_audit, one_line_error


def test_a_mistyped_agent_is_not_found_with_a_suggestion_everywhere(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.ok("agent", "create", "pr-reviewer", "--allow", "github:pulls:read")
    hint = "no agent named pr-reviwer; did you mean agent:pr-reviewer?"
    for args, code in (
        (("consent", "grant", "agent:pr-reviwer", "--scope", "github:pulls:read"), 3),
        (("consent", "grant", "pr-reviwer", "--scope", "github:pulls:read"), 3),
        (("exec", "--agent", "pr-reviwer", "--", "true"), 125),
        (("policy", "explain", "--agent", "pr-reviwer"), 3),
        (("agent", "show", "pr-reviwer"), 3),
        (("revoke", "pr-reviwer"), 3),
        (("credential", "list", "--agent", "pr-reviwer"), 3),
        (("consent", "revoke", "pr-reviwer"), 3),
        (("consent", "revoke", "agent:pr-reviwer"), 3),
        (("agent", "disable", "pr-reviwer"), 3),
        (("agent", "enable", "agent:pr-reviwer"), 3),
        (("agent", "set", "pr-reviwer", "--session-bus"), 3),
        (("agent", "delete", "pr-reviwer"), 3),
    ):
        line = one_line_error(k.run(*args, tty=True), code)
        assert line == f"kontext: {hint}", (args, line)
    far = one_line_error(k.run("agent", "show", "zzz"), 3)
    assert far == "kontext: no agent named zzz; see 'kontext agent list'"
    # The exec attempt is still on the record, as a denial.
    denied = [e for e in api_audit(k) if e["event"] == "credential.denied"]
    assert denied and denied[-1]["agent"]["id"] == "agent:pr-reviwer"


def test_agent_and_bare_names_are_the_same_everywhere(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.ok("agent", "create", "bot", "--allow", "github:pulls:read")
    k.ok("consent", "grant", "bot", "--scope", "github:pulls:read", tty=True)
    assert "agent:bot" in k.ok("consent", "list").stdout
    assert k.ok("consent", "revoke", "bot").stdout == "revoked 1 grant to agent:bot\n"
    k.ok("consent", "grant", "agent:bot", "--scope", "github:pulls:read", tty=True)
    assert k.ok("revoke", "bot").stdout.startswith("revoked agent:bot: ")
    k.ok("agent", "enable", "agent:bot")
    assert k.ok("credential", "list", "--agent", "agent:bot").stderr.startswith(
        "no live credentials for agent:bot"
    )


def test_live_credentials_are_listed_and_revoked_by_jti(kx: Kontext) -> None:
    agent = kx.agent("github:pulls:read")
    proc, env = kx.token_for(agent, "--target", "acme/backend")
    jti = env["KONTEXT_CREDENTIAL_ID"]
    try:
        rows = json.loads(kx.ok("credential", "list", "--agent", agent, "--json").stdout)
        assert [r["jti"] for r in rows] == [jti]
        row = rows[0]
        assert row["agent"] == f"agent:{agent}" and row["target"] == "acme/backend"
        assert row["pid"] and row["expires_at"] == int(env["KONTEXT_TOKEN_EXPIRES"])
        text = kx.ok("credential", "list").stdout
        header, *lines = text.splitlines()
        assert header.split()[:6] == ["JTI", "AGENT", "SCOPES", "TARGET", "PID", "EXPIRES"]
        mine = [line for line in lines if line.startswith(jti)]
        assert mine and f"agent:{agent}" in mine[0] and str(row["pid"]) in mine[0]
        shown = kx.ok("agent", "show", agent).stdout
        assert "live credentials: 1" in shown and jti in shown and "acme/backend" in shown
        assert json.loads(kx.ok("agent", "show", agent, "--json").stdout)["credentials"] == rows
        assert kx.ok("revoke", "credential", jti).stdout == f"revoked credential {jti}\n"
        assert kx.introspect(env["KONTEXT_TOKEN"]) == {"active": False}
    finally:
        kx.close(proc)
    assert json.loads(kx.ok("credential", "list", "--agent", agent, "--json").stdout) == []
    line = one_line_error(kx.run("revoke", "credential", jti), 19)
    assert line.startswith(f"kontext: credential {jti} had already ended (revoked at ")
    line = one_line_error(kx.run("revoke", "credential", "A" * 22), 3)
    assert line == f"kontext: no credential {'A' * 22}; see 'kontext credential list'"


def test_revoke_credential_without_a_jti_points_at_the_list(kx: Kontext) -> None:
    line = one_line_error(kx.run("revoke", "credential"), 2)
    assert "kontext credential list" in line
