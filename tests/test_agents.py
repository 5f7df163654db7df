"""Agent identities: create, list, show, disable, enable, delete — and every bad input refused.

A refused command prints exactly one line on stderr starting ``kontext: ``, exits
with the documented status, and changes nothing: the agent list and the audit
log are the same afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import count
from typing import Any

import pytest
from conftest import Kontext, api_agent, api_audit, one_line_error, wait_until

_serial = count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_serial)}"


def agents(k: Kontext) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in json.loads(k.ok("agent", "list", "--json").stdout)}


_BACKGROUND = {"credential.expired", "key.retiring", "key.retired"}


def snapshot(k: Kontext) -> tuple[dict[str, Any], int]:
    """What a refused command must not change: the agents and the audit log's length.

    Read over the control API (a third-party client's view), which is quicker than the CLI.
    """
    with k.control() as api:
        listed = {a["name"]: a for a in api.get("/v1/agents").json()["agents"]}
        recent = api.get("/v1/audit", params={"last": 200}).json()["events"]
    # The shared daemon writes events of its own at any moment (another test's
    # credential reaching its expiry, a retiring key): those are not this command's.
    last = max((e["id"] for e in recent if e["event"] not in _BACKGROUND), default=0)
    for agent in listed.values():
        agent.pop("live_credentials")
    return listed, last


def exec_status(k: Kontext, name: str) -> subprocess.CompletedProcess[str]:
    return k.run("exec", "--agent", name, "--", sys.executable, "-c", "print('ran')")


# -- the happy path -------------------------------------------------------------


def test_create_show_list_as_json(kx: Kontext) -> None:
    name = unique("pr-reviewer")
    created = json.loads(
        kx.ok(
            "agent",
            "create",
            name,
            "--allow",
            "github:pulls:write",
            "--allow",
            "github:pulls:read",
            "--allow",
            "github:pulls:read",
            "--display-name",
            "PR Reviewer",
            "--max-ttl",
            "30m",
            "--json",
        ).stdout
    )
    assert created == {
        "id": f"agent:{name}",
        "name": name,
        "display_name": "PR Reviewer",
        "scopes": ["github:pulls:read", "github:pulls:write"],
        "max_ttl": 1800,
        "created_at": created["created_at"],
        "disabled": False,
        "disabled_reason": None,
        "live_credentials": 0,
        "session_bus": False,
    }
    shown = json.loads(kx.ok("agent", "show", name, "--json").stdout)
    assert shown == {**created, "credentials": []}  # and its live credentials
    # agent:NAME is accepted wherever a name is.
    assert json.loads(kx.ok("agent", "show", f"agent:{name}", "--json").stdout) == shown
    assert agents(kx)[name] == created

    text = kx.ok("agent", "show", name).stdout
    assert f"agent:            agent:{name}\n" in text
    assert "name:             PR Reviewer\n" in text
    assert "scopes:           github:pulls:read github:pulls:write\n" in text
    assert "max ttl:          30m\n" in text
    assert "state:            enabled\n" in text

    listing = kx.ok("agent", "list").stdout
    assert listing.splitlines()[0].split() == [
        "AGENT",
        "NAME",
        "SCOPES",
        "MAX",
        "TTL",
        "STATE",
        "LIVE",
    ]
    assert f"agent:{name}" in listing


def test_defaults_display_name_and_max_ttl(kx: Kontext) -> None:
    name = unique("release-notes")
    created = kx.ok("agent", "create", name, "--allow", "github:contents:read")
    _, pid, serial = name.rsplit("-", 2)
    assert created.stdout == (
        f"created agent:{name} (Release Notes {pid} {serial}): github:contents:read\n"
    )
    shown = api_agent(kx, name)
    assert shown["max_ttl"] == 3600
    assert shown["display_name"].startswith("Release Notes ")


def test_live_credentials_are_counted(kx: Kontext) -> None:
    name = kx.agent("github:pulls:read", prefix="count")
    proc, _ = kx.token_for(name)
    try:
        assert api_agent(kx, name)["live_credentials"] == 1
        assert agents(kx)[name]["live_credentials"] == 1
    finally:
        kx.close(proc)
    assert api_agent(kx, name)["live_credentials"] == 0


def test_disable_refuses_and_revokes_enable_restores(kx: Kontext) -> None:
    name = kx.agent("github:issues:read", prefix="toggle")
    proc, env = kx.token_for(name)
    try:
        disabled = kx.ok("agent", "disable", name)
        assert disabled.stdout == f"disabled agent:{name}; revoked 1 live credential(s)\n"
        assert kx.introspect(env["KONTEXT_TOKEN"]) == {"active": False}
        shown = api_agent(kx, name)
        assert shown["disabled"] is True
        assert shown["disabled_reason"]
        assert "state:            disabled (" in kx.ok("agent", "show", name).stdout
        line = one_line_error(exec_status(kx, name), 122)
        assert line.startswith(f"kontext: denied by agent permissions: agent:{name} is disabled")
    finally:
        kx.close(proc)

    assert kx.ok("agent", "enable", name).stdout == f"enabled agent:{name}\n"
    shown = api_agent(kx, name)
    assert shown["disabled"] is False
    assert shown["disabled_reason"] is None
    ran = exec_status(kx, name)
    assert (ran.returncode, ran.stdout) == (0, "ran\n")
    # Enabling twice is harmless.
    kx.ok("agent", "enable", name)


def test_delete(kx: Kontext) -> None:
    name = kx.agent("github:issues:read", prefix="gone")
    assert kx.ok("agent", "delete", name).stdout == f"deleted agent:{name}\n"
    assert name not in agents(kx)
    line = one_line_error(kx.run("agent", "show", name), 3)
    assert f"no agent named {name}" in line
    one_line_error(kx.run("agent", "delete", name), 3)
    one_line_error(kx.run("agent", "disable", name), 3)
    one_line_error(kx.run("agent", "enable", name), 3)
    gone = one_line_error(exec_status(kx, name), 125)  # not found, not "denied" (122)
    assert gone.startswith(f"kontext: no agent named {name}; ")
    # The name can be used again, for a new agent with new scopes.
    kx.ok("agent", "create", name, "--allow", "slack:chat:write")
    assert agents(kx)[name]["scopes"] == ["slack:chat:write"]


def test_agent_changes_are_audited(kx: Kontext) -> None:
    name = kx.agent("github:issues:read", prefix="audited", consent=False)
    kx.ok("agent", "disable", name)
    kx.ok("agent", "enable", name)
    kx.ok("agent", "delete", name)
    events = [e["event"] for e in api_audit(kx, agent=name)]
    assert events == ["agent.created", "agent.revoked", "agent.enabled", "agent.deleted"]


# -- bad input: one line, documented status, nothing changed -----------------------

BAD_NAMES = {
    "uppercase": "PR-Reviewer",
    "leading-dash": "-reviewer",  # given after '--' (see test_name_that_looks_like_an_option)
    "64-chars": "a" * 64,
    "slash": "a/b",
    "empty": "",
    "cyrillic-look-alike": "\u0440r-reviewer",  # Cyrillic er, looks like a Latin p
    "underscore": "pr_reviewer",
    "agent-prefix-only": "agent:",
    "newline": "pr\nreviewer",
}


@pytest.mark.parametrize("bad", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_bad_agent_names(kx: Kontext, bad: str) -> None:
    before = snapshot(kx)
    line = one_line_error(kx.run("agent", "create", "--allow", "github:pulls:read", "--", bad), 2)
    assert line.startswith("kontext: invalid agent name ")
    assert "lowercase letters, digits and dashes" in line
    assert snapshot(kx) == before


def test_name_that_looks_like_an_option(kx: Kontext) -> None:
    # Without '--', '-reviewer' is read as options; the parser refuses it in one line.
    before = snapshot(kx)
    proc = kx.run("agent", "create", "-reviewer", "--allow", "github:pulls:read")
    line = one_line_error(proc, 2)
    assert line == "kontext: no such option: -r (see 'kontext agent create --help')"
    assert snapshot(kx) == before


def test_longest_name_is_fine_and_listed_whole(kx: Kontext) -> None:
    name = f"x{os.getpid()}-{next(_serial)}-".ljust(63, "a")
    assert len(name) == 63
    kx.ok(
        "agent",
        "create",
        name,
        "--allow",
        "github:pulls:read",
        "--allow",
        "github:pulls:write",
        "--allow",
        "github:issues:read",
        "--allow",
        "github:contents:read",
    )
    # Piped, the table prints whole values: nothing cut to fit 80 columns.
    lines = kx.ok("agent", "list").stdout.splitlines()
    [row] = [line for line in lines if line.startswith(f"agent:{name} ")]
    assert "  github:contents:read github:issues:read github:pulls:read github:pulls:write  " in row
    assert row.split()[-3:] == ["1h", "enabled", "0"]
    kx.ok("agent", "delete", name)


@pytest.mark.parametrize("display", ["x[/]", "[bold]Loud[/bold]", "Ünïcødé ✓"])
def test_display_names_are_shown_verbatim(kx: Kontext, display: str) -> None:
    name = unique("verbatim")
    created = kx.ok(
        "agent", "create", name, "--allow", "github:pulls:read", "--display-name", display
    )
    assert created.stdout == f"created agent:{name} ({display}): github:pulls:read\n"
    assert f"name:             {display}\n" in kx.ok("agent", "show", name).stdout
    assert f"  {display}  " in kx.ok("agent", "list").stdout
    assert api_agent(kx, name)["display_name"] == display


def test_duplicate_name(kx: Kontext) -> None:
    name = kx.agent("github:pulls:read", prefix="dup")
    before = snapshot(kx)
    line = one_line_error(kx.run("agent", "create", name, "--allow", "slack:chat:write"), 4)
    assert line == f"kontext: agent:{name} already exists; pick another name"
    assert snapshot(kx) == before
    assert agents(kx)[name]["scopes"] == ["github:pulls:read"]


BAD_SCOPE_SYNTAX = [
    "github",
    "github:",
    ":pulls:read",
    "GitHub:pulls:read",
    "github:Pulls:Read",
    "github pulls read",
    "github:pulls:read ",
    "github::read",
    "",
]


@pytest.mark.parametrize("scope", BAD_SCOPE_SYNTAX)
def test_bad_scope_syntax(kx: Kontext, scope: str) -> None:
    before = snapshot(kx)
    name = unique("syntax")
    line = one_line_error(
        kx.run("agent", "create", name, "--allow", "github:pulls:read", "--allow", scope), 2
    )
    assert line.startswith("kontext: invalid scope ")
    assert "INTEGRATION:SCOPE, e.g. github:pulls:read" in line
    assert snapshot(kx) == before


def test_unknown_integration_lists_the_known_ones(kx: Kontext) -> None:
    before = snapshot(kx)
    line = one_line_error(kx.run("agent", "create", unique("x"), "--allow", "jira:issues:read"), 2)
    assert line == (
        "kontext: unknown integration 'jira' in jira:issues:read: known are github, slack"
    )
    assert snapshot(kx) == before


def test_unknown_scope_lists_what_the_integration_offers(kx: Kontext) -> None:
    before = snapshot(kx)
    line = one_line_error(
        kx.run("agent", "create", unique("x"), "--allow", "github:pulls:delete"), 2
    )
    assert line.startswith("kontext: unknown scope github:pulls:delete: github offers ")
    offered = line.split("github offers ")[1].split(", ")
    assert {"pulls:read", "pulls:write", "issues:read", "issues:write", "contents:read"} <= set(
        offered
    )
    assert snapshot(kx) == before


@pytest.mark.parametrize("ttl", ["10", "1x", "0s", "99d", "25h", "1.5h"])
def test_bad_max_ttl(kx: Kontext, ttl: str) -> None:
    before = snapshot(kx)
    line = one_line_error(
        kx.run("agent", "create", unique("ttl"), "--allow", "github:pulls:read", "--max-ttl", ttl),
        2,
    )
    assert "duration" in line
    assert snapshot(kx) == before


@pytest.mark.parametrize(
    "display",
    ["", "   ", "x" * 65, "bell\x07", "two\nlines"],
    ids=["empty", "blank", "65-chars", "control-char", "newline"],
)
def test_bad_display_name(kx: Kontext, display: str) -> None:
    before = snapshot(kx)
    line = one_line_error(
        kx.run(
            "agent",
            "create",
            unique("disp"),
            "--allow",
            "github:pulls:read",
            "--display-name",
            display,
        ),
        2,
    )
    assert "display name" in line
    assert snapshot(kx) == before


def test_create_without_allow(kx: Kontext) -> None:
    before = snapshot(kx)
    proc = kx.run("agent", "create", unique("bare"))
    line = one_line_error(proc, 2)
    assert line == "kontext: missing option '--allow' (see 'kontext agent create --help')"
    assert snapshot(kx) == before


def test_bad_names_elsewhere(kx: Kontext) -> None:
    before = snapshot(kx)
    for command in ("show", "delete", "disable", "enable"):
        line = one_line_error(kx.run("agent", command, "Bad/Name"), 2)
        assert line.startswith("kontext: invalid agent name 'Bad/Name'")
    assert snapshot(kx) == before


# -- user-defined integrations and the config file ---------------------------------

JIRA = """\
[integrations.jira]
display_name = "Jira"
env = ["JIRA_TOKEN"]
scopes = { "issues:read" = "Read issues", "issues:write" = "Create and edit issues" }
"""


def write_config(k: Kontext, text: str) -> None:
    path = k.home / "config" / "config.toml"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text)


SHOW_JIRA = (
    "import json,os,sys;"
    "print(json.dumps({k: os.environ.get(k) for k in"
    " ('JIRA_TOKEN', 'KONTEXT_TOKEN', 'GITHUB_TOKEN')}), flush=True);"
    "sys.stdin.read()"
)


def test_user_defined_integration(fresh_kx: Kontext) -> None:
    k = fresh_kx
    write_config(k, JIRA)
    k.start()
    k.ok(
        "agent", "create", "triage", "--allow", "jira:issues:read", "--allow", "github:issues:read"
    )
    k.approve("triage", "jira:issues:read")
    proc = k.popen(
        "exec",
        "--agent",
        "triage",
        "--scope",
        "jira:issues:read",
        "--",
        sys.executable,
        "-c",
        SHOW_JIRA,
        stdin=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        env = json.loads(proc.stdout.readline())
        token = env["JIRA_TOKEN"]
        assert token
        assert env["KONTEXT_TOKEN"] == token
        assert env["GITHUB_TOKEN"] is None
        answer = k.introspect(token)
        assert answer["active"] is True
        assert answer["aud"] == "jira"
        assert answer["scope"] == "jira:issues:read"
    finally:
        k.close(proc)
    assert proc.returncode == 0
    line = one_line_error(k.run("agent", "create", "x", "--allow", "jira:boards:read"), 2)
    assert line == "kontext: unknown scope jira:boards:read: jira offers issues:read, issues:write"
    line = one_line_error(k.run("agent", "create", "x", "--allow", "asana:tasks:read"), 2)
    assert line.endswith("known are github, jira, slack")


def test_inherited_integration_tokens_do_not_leak_into_the_child(fresh_kx: Kontext) -> None:
    k = fresh_kx
    write_config(k, JIRA)
    k.start()
    k.ok("agent", "create", "reader", "--allow", "github:contents:read")
    k.approve("reader", "github:contents:read")
    proc, env = k.token_for("reader")
    k.close(proc)
    assert "JIRA_TOKEN" not in env
    # A JIRA_TOKEN the parent happens to hold is a credential of another integration.
    child = k.run(
        "exec",
        "--agent",
        "reader",
        "--",
        sys.executable,
        "-c",
        "import os;print(os.environ.get('JIRA_TOKEN'))",
        env={"JIRA_TOKEN": "parent-secret"},
    )
    assert (child.returncode, child.stdout) == (0, "None\n")


BAD_CONFIGS = {
    "not-toml": "this is [ not toml",
    "bad-env-name": JIRA.replace('"JIRA_TOKEN"', '"jira token"'),
    "no-scopes": '[integrations.jira]\nenv = ["JIRA_TOKEN"]\n',
    "bad-fallback": '[secrets]\nfallback = "sometimes"\n',
}


@pytest.mark.parametrize("text", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_invalid_config_stops_the_daemon_from_starting(fresh_kx: Kontext, text: str) -> None:
    k = fresh_kx
    write_config(k, text)
    line = one_line_error(k.run("daemon", "start"), 6)
    assert str(k.home / "config" / "config.toml") in line
    assert not k.socket.exists()
    # A command that would start the daemon says the same, and nothing is left running.
    line = one_line_error(k.run("agent", "list"), 6)
    assert "config.toml" in line
    assert not k.socket.exists()


def test_fixing_the_config_lets_the_daemon_start(fresh_kx: Kontext) -> None:
    k = fresh_kx
    write_config(k, BAD_CONFIGS["not-toml"])
    one_line_error(k.run("daemon", "start"), 6)
    write_config(k, JIRA)
    k.ok("daemon", "start")
    assert wait_until(k.socket.exists)
    k.ok("agent", "create", "fixed", "--allow", "jira:issues:read")


def test_session_bus_is_off_until_allowed_and_every_change_is_audited(kx: Kontext) -> None:
    """Whether an agent's confined exec may reach the session D-Bus (the Secret Service)."""
    name = f"bus-{os.getpid()}"
    created = json.loads(
        kx.ok("agent", "create", name, "--allow", "github:pulls:read", "--json").stdout
    )
    assert created["session_bus"] is False
    assert "hidden from its exec" in kx.ok("agent", "show", name).stdout
    assert "reachable" in kx.ok("agent", "set", name, "--session-bus").stdout
    assert json.loads(kx.ok("agent", "show", name, "--json").stdout)["session_bus"] is True
    kx.ok("agent", "set", name, "--no-session-bus")
    assert json.loads(kx.ok("agent", "show", name, "--json").stdout)["session_bus"] is False
    changes = [e["session_bus"] for e in api_audit(kx, name) if e["event"] == "agent.changed"]
    assert changes == [True, False]
    allowed = f"bus-allowed-{os.getpid()}"
    kx.ok("agent", "create", allowed, "--allow", "github:pulls:read", "--session-bus")
    assert json.loads(kx.ok("agent", "show", allowed, "--json").stdout)["session_bus"] is True


def test_a_name_is_printed_as_it_is_never_as_an_emoji(kx: Kontext) -> None:
    """Rich reads ``:smile:`` as an emoji code; "agent:smile: ..." must stay those words."""
    kx.ok("agent", "create", "smile", "--allow", "github:pulls:read")
    said = kx.ok("agent", "set", "smile", "--session-bus").stdout
    assert said.startswith("agent:smile: session bus reachable"), said
    kx.ok("agent", "set", "smile", "--no-session-bus")
