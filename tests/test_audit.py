"""The audit log: every issuance, denial, revocation and expiry, as the issue's example
shapes it, hash-chained, never holding a token; and ``kontext audit tail`` to read it."""

from __future__ import annotations

import hashlib
import itertools
import json
import queue
import re
import signal
import sqlite3
import sys
import threading
from typing import Any

import pytest
from conftest import Kontext, api_audit, api_new_agent, one_line_error, wait_until

ALL_ALLOW = {"org_policy": "allow", "user_consent": "allow", "agent_permissions": "allow"}
CLOCK = r"\d\d:\d\d:\d\d"


def events_of(k: Kontext, agent: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in api_audit(k, agent=agent) if e["event"] == kind]


def stored_bodies(k: Kontext) -> list[str]:
    """The audit table's rows exactly as stored, read from the database file."""
    conn = sqlite3.connect(f"file:{k.database}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT body FROM audit_events")]
    finally:
        conn.close()


def test_issuance_event_carries_the_issue_fields_and_no_token(kx: Kontext) -> None:
    name = api_new_agent(
        kx,
        "github:pulls:read",
        "github:pulls:write",
        prefix="pr-reviewer",
        display_name="PR Reviewer",
    )
    proc, env = kx.token_for(name, "--target", "acme-corp/backend")
    try:
        token = env["KONTEXT_TOKEN"]
        user = kx.introspect(token)["sub"]
        [issued] = events_of(kx, name, "credential.issued")
    finally:
        kx.close(proc)
    assert issued["agent"] == {"id": f"agent:{name}", "name": "PR Reviewer"}
    assert issued["user"]["id"] == user
    assert user.startswith("user:")
    assert issued["integration"] == "github"
    assert issued["scopes"] == ["github:pulls:read", "github:pulls:write"]
    assert issued["target"] == "acme-corp/backend"
    assert issued["expires_in"] == "600s"
    assert issued["policy_evaluation"] == ALL_ALLOW
    assert issued["jti"] == env["KONTEXT_CREDENTIAL_ID"]

    # The token is nowhere in the log: not whole, not its signature, not in the stored rows.
    signature = token.rsplit(".", 1)[1]
    logged = kx.ok("audit", "tail", "-n", "10000", "--json").stdout
    everything = logged + "\n".join(stored_bodies(kx))
    assert token not in everything
    assert signature not in everything


def test_ttl_shows_in_expires_in(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="ttl")
    proc, _ = kx.token_for(name, "--ttl", "2m")
    kx.close(proc)
    [issued] = events_of(kx, name, "credential.issued")
    assert issued["expires_in"] == "120s"


def test_denial_event_records_every_layers_verdict(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="denied", display_name="Reader")
    proc = kx.run(
        "exec",
        "--agent",
        name,
        "--scope",
        "github:pulls:write",
        "--target",
        "acme-corp/backend",
        "--",
        "true",
    )
    line = one_line_error(proc, 122)
    [denied] = events_of(kx, name, "credential.denied")
    assert denied["agent"] == {"id": f"agent:{name}", "name": "Reader"}
    assert denied["user"]["id"].startswith("user:")
    assert denied["integration"] == "github"
    assert denied["scopes"] == ["github:pulls:write"]
    assert denied["target"] == "acme-corp/backend"
    # Not approved either (the user approved pulls:read); the message names the agent layer.
    assert denied["policy_evaluation"] == {
        **ALL_ALLOW,
        "user_consent": "deny",
        "agent_permissions": "deny",
    }
    assert f"kontext: {denied['reason']}" == line
    assert events_of(kx, name, "credential.issued") == []


def test_revocation_events(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:issues:read", prefix="revoked")
    proc, env = kx.token_for(name)
    try:
        kx.ok("revoke", f"agent:{name}")
    finally:
        kx.close(proc)
    [agent_revoked] = events_of(kx, name, "agent.revoked")
    assert agent_revoked["user"]["id"].startswith("user:")
    assert agent_revoked["agent"]["id"] == f"agent:{name}"
    [revoked] = events_of(kx, name, "credential.revoked")
    assert revoked["jti"] == env["KONTEXT_CREDENTIAL_ID"]
    assert revoked["agent"]["id"] == f"agent:{name}"
    assert revoked["integration"] == "github"
    assert revoked["scopes"] == ["github:issues:read"]
    assert revoked["reason"].startswith("agent revoked")
    # Revoked once: the exec's own lease release afterwards adds no second event.
    assert [e["event"] for e in api_audit(kx, agent=name)] == [
        "agent.created",
        "consent.granted",  # the harness approves each agent, as a user would
        "credential.issued",
        "agent.revoked",
        "credential.revoked",
    ]


def test_lease_end_is_audited_with_the_exit_status(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:issues:read", prefix="lease")
    proc = kx.run("exec", "--agent", name, "--", sys.executable, "-c", "raise SystemExit(3)")
    assert proc.returncode == 3
    [revoked] = events_of(kx, name, "credential.revoked")
    assert revoked["reason"] == "lease closed: the process exited with status 3"


def test_the_chain_links_every_event_to_the_one_before(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    name = api_new_agent(k, "github:pulls:read", prefix="chain")
    proc, _ = k.token_for(name)
    k.close(proc)
    k.run("exec", "--agent", name, "--scope", "github:issues:read", "--", "true")
    k.ok("revoke", f"agent:{name}")
    events = k.audit()
    assert len(events) >= 7
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["prev_hash"] == "0" * 64
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
    for event in events:
        # Each hash covers the whole event (its prev_hash included), canonically encoded.
        body = {key: value for key, value in event.items() if key != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert event["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert len({e["hash"] for e in events}) == len(events)


def test_the_shared_chain_is_unbroken(kx: Kontext) -> None:
    events = api_audit(kx)
    assert events
    for before, after in itertools.pairwise(events):
        assert after["id"] == before["id"] + 1
        assert after["prev_hash"] == before["hash"]


# -- audit tail -----------------------------------------------------------------------


def test_tail_text_lines(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="tail")
    kx.close(kx.token_for(name)[0])
    kx.close(kx.token_for(name, "--target", "acme-corp/backend")[0])
    kx.run("exec", "--agent", name, "--scope", "github:issues:read", "--", "true")
    lines = kx.ok("audit", "tail", "--agent", name).stdout.splitlines()
    assert len(lines) == 7
    who = re.escape(f"agent:{name}")
    expected = [
        rf"{CLOCK} agent\.created      {who} github:pulls:read \(max ttl \d+s\)",
        rf"{CLOCK} consent\.granted    {who} github:pulls:read for 86400s by user:\S+",
        rf"{CLOCK} credential\.issued  {who} -> github",
        rf"{CLOCK} credential\.revoked {who} -> github \(lease closed: the process exited with "
        r"status 0\)",
        rf"{CLOCK} credential\.issued  {who} -> github \[acme-corp/backend\]",
        rf"{CLOCK} credential\.revoked {who} -> github \[acme-corp/backend\] \(lease closed: .*\)",
        rf"{CLOCK} credential\.denied  {who} -> github \(denied by agent permissions: {who} may "
        r"not use github:issues:read\)",
    ]
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_tail_n_limits_to_the_newest(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="tailn")
    for _ in range(2):
        kx.run("exec", "--agent", name, "--", "true")
    everything = kx.audit(agent=name)
    assert len(everything) == 6  # created, consent granted, 2 x (issued, revoked)
    newest_two = kx.ok("audit", "tail", "-n", "2", "--agent", name, "--json").stdout.splitlines()
    assert [json.loads(line) for line in newest_two] == everything[-2:]
    assert len(kx.ok("audit", "tail", "-n", "3", "--agent", name).stdout.splitlines()) == 3
    assert len(kx.ok("audit", "tail", "-n", "1").stdout.splitlines()) == 1


def test_tail_agent_filters(kx: Kontext) -> None:
    mine = api_new_agent(kx, "github:pulls:read", prefix="mine")
    theirs = api_new_agent(kx, "github:pulls:read", prefix="theirs")
    kx.run("exec", "--agent", mine, "--", "true")
    kx.run("exec", "--agent", theirs, "--", "true")
    events = kx.audit(agent=mine)
    assert [e["event"] for e in events] == [
        "agent.created",
        "consent.granted",
        "credential.issued",
        "credential.revoked",
    ]
    assert {e["agent"]["id"] for e in events} == {f"agent:{mine}"}
    # agent:NAME works as well as NAME.
    prefixed = kx.ok("audit", "tail", "--agent", f"agent:{mine}", "--json").stdout.splitlines()
    assert [json.loads(line) for line in prefixed] == events
    line = one_line_error(kx.run("audit", "tail", "--agent", "Not/An/Agent"), 2)
    assert "invalid agent name" in line


def test_tail_json_lines_are_objects(kx: Kontext) -> None:
    api_new_agent(kx, "github:pulls:read", prefix="jsonl")
    out = kx.ok("audit", "tail", "-n", "5", "--json").stdout
    lines = out.splitlines()
    assert len(lines) == 5
    for line in lines:
        event = json.loads(line)
        assert isinstance(event, dict)
        assert {"id", "ts", "event", "prev_hash", "hash"} <= set(event)


class Follower:
    """``kontext audit tail -f ...`` running, its lines readable with a timeout."""

    def __init__(self, k: Kontext, *args: str) -> None:
        self.proc = k.popen("audit", "tail", "-f", *args)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def line(self, timeout: float = 5.0) -> str | None:
        return self.lines.get(timeout=timeout)

    def event(self, timeout: float = 5.0) -> dict[str, Any]:
        line = self.line(timeout)
        assert line is not None, "the follower ended"
        return dict(json.loads(line))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self.thread.join(timeout=5)  # it reads to EOF before the pipe is closed
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def test_tail_follow_prints_new_events_live(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="follow")
    follower = Follower(kx, "--json", "-n", "1", "--agent", name)
    try:
        assert follower.event()["event"] == "consent.granted"
        proc, env = kx.token_for(name)
        try:
            issued = follower.event()
            assert issued["event"] == "credential.issued"
            assert issued["jti"] == env["KONTEXT_CREDENTIAL_ID"]
        finally:
            kx.close(proc)
        assert follower.event()["event"] == "credential.revoked"
        kx.ok("agent", "disable", name)
        assert follower.event()["event"] == "agent.revoked"
        # Another agent's events do not show up for --agent NAME.
        api_new_agent(kx, "github:pulls:read", prefix="follow-other")
        assert follower.proc.poll() is None
        # ^C ends it promptly, without a traceback.
        follower.proc.send_signal(signal.SIGINT)
        assert follower.proc.wait(timeout=5) == 130
        assert follower.line() is None  # nothing else was printed
    finally:
        follower.stop()
    assert "Traceback" not in follower.stderr


def test_tail_follow_text_mode(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="followtext")
    follower = Follower(kx, "-n", "1", "--agent", name)
    try:
        first = follower.line()
        assert re.fullmatch(
            rf"{CLOCK} consent\.granted    agent:{name} .* by user:\S+\n", str(first)
        )
        kx.run("exec", "--agent", name, "--", "true")
        issued = follower.line()
        assert re.fullmatch(rf"{CLOCK} credential\.issued  agent:{name} -> github\n", str(issued))
    finally:
        follower.stop()


@pytest.mark.slow
def test_expiry_is_audited(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="expiry")
    sleeper = "import os,time;print(os.environ['KONTEXT_CREDENTIAL_ID'],flush=True);time.sleep(11)"
    proc = kx.popen("exec", "--agent", name, "--ttl", "10s", "--", sys.executable, "-c", sleeper)
    try:
        assert proc.stdout is not None
        jti = proc.stdout.readline().strip()
        [issued] = events_of(kx, name, "credential.issued")
        assert issued["expires_in"] == "10s"
        assert issued["jti"] == jti
        assert wait_until(
            lambda: events_of(kx, name, "credential.expired"), timeout=15, interval=0.25
        )
        [expired] = events_of(kx, name, "credential.expired")
        assert expired["jti"] == jti
        assert expired["reason"] == "reached its expiry"
        assert expired["integration"] == "github"
        assert proc.poll() is None  # the command outlived its credential
        assert proc.wait(timeout=10) == 0
    finally:
        proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    # Expired, not also revoked when the command finally ended.
    assert events_of(kx, name, "credential.revoked") == []
    tail = kx.ok("audit", "tail", "--agent", name).stdout
    assert re.search(
        rf"{CLOCK} credential\.expired agent:{name} -> github \(reached its expiry\)", tail
    )
