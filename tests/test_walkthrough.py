"""The README walk-through, end to end: three agents, exec for each, revoke one, audit tail.

Runs in a home of its own so the agents carry the exact names a reader types.
"""

from __future__ import annotations

import json
import re
import sys

from conftest import Kontext, without_not_connected

AGENTS = {
    "pr-reviewer": (
        ["github:metadata:read", "github:pulls:read", "github:pulls:write"],
        ["--display-name", "PR Reviewer"],
    ),
    "issue-triage": (["github:issues:read", "github:issues:write"], []),
    "release-notes": (["github:contents:read"], ["--max-ttl", "30m"]),
}
PRINT_AGENT = "import os;print(os.environ['KONTEXT_AGENT'])"


def exec_ok(k: Kontext, agent: str) -> None:
    """``kontext exec --agent AGENT -- python -c ...`` runs the child, which sees its identity."""
    proc = k.run("exec", "--agent", agent, "--", sys.executable, "-c", PRINT_AGENT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{agent}\n"
    assert without_not_connected(proc.stderr) == ""


def test_three_agents_revoke_one_the_others_keep_working(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()

    for name, (scopes, extra) in AGENTS.items():
        args = ["agent", "create", name, *extra]
        for scope in scopes:
            args += ["--allow", scope]
        created = k.ok(*args)
        assert created.stdout.startswith(f"created agent:{name} ")
        if name == "pr-reviewer":  # as the README shows it
            assert created.stdout == (
                "created agent:pr-reviewer (PR Reviewer): "
                "github:metadata:read github:pulls:read github:pulls:write\n"
            )
    # The user approves each agent once, on the consent page (here the $BROWSER
    # stand-in clicks Approve; at a terminal the first exec opens the page itself).
    for name, (scopes, _) in AGENTS.items():
        k.approve(name, *scopes)
    listed = {a["id"]: a for a in json.loads(k.ok("agent", "list", "--json").stdout)}
    assert listed["agent:release-notes"]["max_ttl"] == 1800
    assert set(listed) == {f"agent:{n}" for n in AGENTS}
    assert listed["agent:pr-reviewer"]["display_name"] == "PR Reviewer"
    assert listed["agent:issue-triage"]["scopes"] == ["github:issues:read", "github:issues:write"]
    assert listed["agent:release-notes"]["scopes"] == ["github:contents:read"]

    # Each agent gets a credential of its own, held open by a running exec
    # (issue-triage as in the README: one scope, five minutes).
    held = {name: k.token_for(name) for name in ("pr-reviewer", "release-notes")}
    held["issue-triage"] = k.token_for(
        "issue-triage", "--scope", "github:issues:read", "--ttl", "5m"
    )
    try:
        tokens = {name: env["GITHUB_TOKEN"] for name, (_, env) in held.items()}
        assert len(set(tokens.values())) == 3
        for _, env in held.values():
            assert env["GH_TOKEN"] == env["KONTEXT_TOKEN"] == env["GITHUB_TOKEN"]
        for name, token in tokens.items():
            answer = k.introspect(token)
            assert answer["active"] is True
            assert answer["act"] == {"sub": f"agent:{name}"}
        reviewer = k.introspect(tokens["pr-reviewer"])
        assert reviewer["scope"] == "github:metadata:read github:pulls:read github:pulls:write"
        triage = k.introspect(tokens["issue-triage"])
        assert (triage["scope"], triage["exp"] - triage["iat"]) == ("github:issues:read", 300)

        # An agent asking for more than it was allowed is told which layer said no.
        denied = k.run(
            "exec",
            "--agent",
            "issue-triage",
            "--scope",
            "github:pulls:write",
            "--",
            sys.executable,
            "-c",
            "print('must not run')",
        )
        assert denied.returncode == 122
        assert denied.stdout == ""
        assert denied.stderr == (
            "kontext: denied by agent permissions: "
            "agent:issue-triage may not use github:pulls:write\n"
        )

        revoked = k.ok("revoke", "agent:issue-triage")
        assert revoked.stdout == (
            "revoked agent:issue-triage: 1 live credential(s) revoked; "
            "undo with 'kontext agent enable issue-triage'\n"
        )
        # Immediately after revoke returns: the live token is dead, the others are not.
        assert k.introspect(tokens["issue-triage"]) == {"active": False}
        assert k.introspect(tokens["pr-reviewer"])["active"] is True
        assert k.introspect(tokens["release-notes"])["active"] is True

        exec_ok(k, "pr-reviewer")
        exec_ok(k, "release-notes")

        refused = k.run(
            "exec", "--agent", "issue-triage", "--", sys.executable, "-c", "print('must not run')"
        )
        assert refused.returncode == 122
        assert refused.stdout == ""
        lines = refused.stderr.splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith("kontext: denied by agent permissions: agent:issue-triage ")
        assert "disabled" in lines[0]

        shown = json.loads(k.ok("agent", "show", "issue-triage", "--json").stdout)
        assert shown["disabled"] is True
        assert shown["live_credentials"] == 0
    finally:
        for proc, _ in held.values():
            k.close(proc)
    for proc, _ in held.values():
        # The revoked agent's child was not killed (no --kill): it ended normally.
        assert proc.returncode == 0

    enabled = k.ok("agent", "enable", "issue-triage")
    assert enabled.stdout == "enabled agent:issue-triage\n"
    exec_ok(k, "issue-triage")
    # The old token stays dead: enabling the agent does not resurrect revoked credentials.
    assert k.introspect(tokens["issue-triage"]) == {"active": False}

    # audit tail tells the same story, one line per event.
    tail = k.ok("audit", "tail", "-n", "10000").stdout.splitlines()
    story = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in tail]
    for name in AGENTS:
        assert f"credential.issued  agent:{name} -> github" in story
    assert any(s.startswith("agent.revoked      agent:issue-triage") for s in story)
    assert any(
        re.fullmatch(
            r"credential\.revoked agent:issue-triage -> github "
            r"\(agent revoked: revoked by user:\S+\)",
            s,
        )
        for s in story
    )
    assert (
        "credential.revoked agent:pr-reviewer -> github (lease closed: the process exited "
        "with status 0)" in story
    )
    assert any(
        s.startswith("credential.denied  agent:issue-triage -> github (denied by agent permissions")
        for s in story
    )
    assert any(s.startswith("agent.enabled      agent:issue-triage") for s in story)
    assert all(re.match(r"^\d\d:\d\d:\d\d \S", line) for line in tail)
    for token in tokens.values():
        assert token not in "\n".join(tail)
