"""``kontext audit tail`` lines as a person reads them: every event says what happened,
to whom and the detail; the date when the events are not all from today; no
trailing spaces; and nothing audited that did not happen (a repeated revoke)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Kontext, api_new_agent, os_user, wait_until
from test_audit_fast import append

from kontext.common.events import EVENTS
from kontext_cli.auditline import DETAILS

CLOCK = r"\d\d:\d\d:\d\d"
DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"

# One event of every type, shaped as the daemon writes it, and the line it makes.
SAMPLES: list[tuple[dict[str, object], str]] = [
    (
        {"event": "agent.created", "agent": {"id": "agent:a"}, "scopes": ["github:pulls:read"]}
        | {"user": {"id": "user:u"}, "max_ttl": "3600s"},
        "agent:a github:pulls:read (max ttl 3600s)",
    ),
    (
        {"event": "agent.enabled", "agent": {"id": "agent:a"}, "user": {"id": "user:u"}},
        "agent:a by user:u",
    ),
    (
        {"event": "agent.disabled", "agent": {"id": "agent:a"}, "user": {"id": "user:u"}},
        "agent:a by user:u",
    ),
    (
        {"event": "agent.deleted", "agent": {"id": "agent:a"}, "user": {"id": "user:u"}},
        "agent:a by user:u",
    ),
    (
        {"event": "agent.revoked", "agent": {"id": "agent:a"}, "user": {"id": "user:u"}}
        | {"reason": "revoked by user:u", "kill": True},
        "agent:a --kill by user:u (revoked by user:u)",
    ),
    (
        {"event": "credential.issued", "agent": {"id": "agent:a"}, "integration": "github"}
        | {"target": "acme/x", "jti": "j1", "pid": 42},
        "agent:a -> github [acme/x]",
    ),
    (
        {"event": "credential.denied", "agent": {"id": "agent:a"}, "integration": "github"}
        | {"reason": "denied by org policy"},
        "agent:a -> github (denied by org policy)",
    ),
    (
        {"event": "credential.revoked", "agent": {"id": "agent:a"}, "integration": "github"}
        | {"reason": "lease closed"},
        "agent:a -> github (lease closed)",
    ),
    (
        {"event": "credential.expired", "agent": {"id": "agent:a"}, "integration": "github"}
        | {"reason": "reached its expiry"},
        "agent:a -> github (reached its expiry)",
    ),
    (
        {"event": "process.killed", "agent": {"id": "agent:a"}, "jti": "j1", "pid": 4242}
        | {"signal": "SIGTERM"},
        "agent:a pid 4242 SIGTERM",
    ),
    (
        {"event": "consent.granted", "agent": {"id": "agent:a"}, "user": {"id": "user:u"}}
        | {"scopes": ["github:pulls:read"], "target": "acme/x", "expires_in": "3600s"},
        "agent:a github:pulls:read [acme/x] for 3600s by user:u",
    ),
    (
        {"event": "consent.revoked", "agent": {"id": "agent:a"}, "user": {"id": "user:u"}}
        | {"grants": ["g1", "g2"]},
        "agent:a 2 grants by user:u",
    ),
    (
        {"event": "session.started", "user": {"id": "user:alice@acme.com"}}
        | {"issuer": "http://127.0.0.1:1", "external": False},
        "user:alice@acme.com via http://127.0.0.1:1",
    ),
    (
        {"event": "session.ended", "user": {"id": "user:local"}, "reason": "logged out"}
        | {"session_user": "user:alice@acme.com"},
        "user:alice@acme.com (logged out)",
    ),
    (
        {"event": "oauth.code_replayed", "client_id": "agent:a", "tokens_revoked": 2}
        | {"grants_revoked": 1},
        "client agent:a 2 tokens revoked 1 grants revoked",
    ),
    (
        {"event": "oauth.refresh_reused", "client_id": "kontext", "tokens_revoked": 3},
        "client kontext 3 tokens revoked",
    ),
    (
        {"event": "oauth.throttled", "endpoint": "/token", "caller": "uid:1000"}
        | {"limit": 20, "window_seconds": 10},
        "/token caller uid:1000 (20 failures in 10s)",
    ),
    (
        {"event": "integration.connected", "integration": "github", "method": "api_key"}
        | {"user": {"id": "user:u"}},
        "github (api_key) by user:u",
    ),
    (
        {"event": "integration.disconnected", "integration": "github", "reason": "asked"}
        | {"user": {"id": "user:u"}},
        "github by user:u (asked)",
    ),
    ({"event": "integration.refreshed", "integration": "github"}, "github"),
    ({"event": "key.created", "kid": "K1", "storage": "file:/x"}, "K1 in file:/x"),
    (
        {"event": "key.rotated", "kid": "K2", "retired": ["K1"], "user": {"id": "user:u"}},
        "K2 retired K1 by user:u",
    ),
    ({"event": "key.retiring", "kid": "K1", "alg": "ES256"}, "K1 (ES256)"),
    ({"event": "key.retired", "kid": "K1", "alg": "RS256"}, "K1 (RS256)"),
    (
        {"event": "config.reloaded", "path": "/c.toml", "changed": ["keys.rotation_grace"]}
        | {"trigger": "kontext config reload", "caller": {"pid": 7}},
        "/c.toml changed keys.rotation_grace (kontext config reload)",
    ),
    (
        {"event": "config.refused", "path": "/c.toml", "sha256": "ab", "trigger": "file changed"},
        "/c.toml (file changed)",
    ),
    (
        {"event": "store.recreated", "path": "/d/kontext.db", "reason": "missing"}
        | {"abandoned": {"event_id": 41, "event_hash": "ab", "signed_at": 1.0}},
        "/d/kontext.db (abandoned a log up to event 41)",
    ),
    (
        {"event": "policy.reloaded", "trigger": "start", "files": ["a.cedar", "b.cedar"]}
        | {"errors": []},
        "2 files (start)",
    ),
    (
        {"event": "audit.pruned", "through": 40, "deleted": 40}
        | {"requested_by": {"pid": 7, "uid": 1000}},
        "events through 40 (40 removed) by pid 7 uid 1000",
    ),
    (
        {"event": "audit.anchor_pinned", "kids": ["K1"], "event_id": 9, "first_use": True}
        | {"where": "file:/x"},
        "key K1 checkpoint at event 9 (trusting the log as it stood) in file:/x",
    ),
    (
        {"event": "daemon.started", "pid": 99, "version": "1.0", "orphans_revoked": 2},
        "pid 99 version 1.0 (2 orphaned credentials revoked)",
    ),
    ({"event": "daemon.stopped", "pid": 99}, "pid 99"),
    (
        {"event": "control.refused", "peer": {"uid": 65534, "pid": 5}, "reason": "other uid"},
        "uid 65534 pid 5 (other uid)",
    ),
    (
        {"event": "http.refused", "method": "POST", "path": "/token", "reason": "cross-origin"}
        | {"not_recorded_since_last": 3},
        "POST /token (cross-origin) (+3 not recorded)",
    ),
    (
        {"event": "api.call", "agent": {"id": "agent:a"}, "method": "GET", "path": "/r/1"}
        | {"status": 200},
        "agent:a GET /r/1 200",
    ),
    (
        {"event": "api.denied", "method": "GET", "path": "/r/1", "status": 401}
        | {"reason": "no token"},
        "GET /r/1 401 (no token)",
    ),
    (
        {"event": "dashboard.opened", "user": {"id": "user:alice"}, "via": "dashboard"},
        "by user:alice via dashboard",
    ),
    ({"event": "dashboard.closed", "user": {"id": "user:alice"}}, "by user:alice"),
    (
        {"event": "dashboard.refused", "agent": {"id": "agent:x"}, "peer": {"pid": 42}}
        | {"method": "GET", "path": "/dashboard/open", "reason": "inside agent:x"},
        "agent:x pid 42 GET /dashboard/open (inside agent:x)",
    ),
    (
        {"event": "agent.revoked", "agent": {"id": "agent:x"}, "user": {"id": "user:alice"}}
        | {"kill": True, "reason": "revoked", "via": "dashboard"},
        "agent:x --kill by user:alice (revoked) via dashboard",
    ),
    (
        {"event": "credential.issued", "agent": {"id": "agent:a"}, "integration": "github"}
        | {"scopes": ["github:pulls:read"], "expires_in": "60s", "kind": "exchange"}
        | {"parent": "J1", "target": "acme/x"},
        "agent:a -> github [acme/x] github:pulls:read for 60s (exchange of J1)",
    ),
    (
        {"event": "credential.issued", "agent": {"id": "agent:a"}, "integration": "github"}
        | {"scopes": ["github:pulls:read"], "expires_in": "29s", "ttl_asked": "300s"}
        | {"kind": "exchange", "parent": "J1"},
        "agent:a -> github github:pulls:read for 29s (asked 300s) (exchange of J1)",
    ),
    (
        {"event": "agent.changed", "agent": {"id": "agent:a"}, "session_bus": True}
        | {"user": {"id": "user:u"}},
        "agent:a session bus allowed by user:u",
    ),
    (
        {"event": "exec.unconfined", "agent": {"id": "agent:a"}, "pid": 7}
        | {"reason": "--no-confine"},
        "agent:a pid 7 (--no-confine)",
    ),
    (
        {"event": "consent.denied", "client_id": "mcp-1", "client_name": "Editor"}
        | {"scopes": ["github:pulls:read"], "resource": "http://127.0.0.1:9/gw/github"},
        "client Editor github:pulls:read -> http://127.0.0.1:9/gw/github",
    ),
    (
        {"event": "consent.expired", "client_id": "mcp-1", "scopes": ["github:pulls:read"]}
        | {"reason": "not answered"},
        "client mcp-1 github:pulls:read (not answered)",
    ),
    (
        {"event": "oauth.client_registered", "client_id": "mcp-1", "client_name": "Editor"}
        | {"peer_uid": 1000},
        "client Editor uid 1000",
    ),
    (
        {"event": "oauth.client_refused", "endpoint": "/register", "peer_uid": 65534}
        | {"reason": "web redirect"},
        "/register uid 65534 (web redirect)",
    ),
    (
        {"event": "federation.refused", "platform": "github-actions", "check": "aud"}
        | {"reason": "for another audience"},
        "github-actions check aud (for another audience)",
    ),
]


def test_every_event_type_has_a_line_of_its_own() -> None:
    assert set(DETAILS) == set(EVENTS)
    assert {str(e["event"]) for e, _ in SAMPLES} == set(EVENTS)


@pytest.fixture
def sampled(fresh_kx: Kontext) -> Kontext:
    """A stopped home whose log ends with one event of every type."""
    fresh_kx.start()
    fresh_kx.stop()
    append(fresh_kx, [event for event, _ in SAMPLES])
    return fresh_kx


def appended(k: Kontext, count: int, *args: str) -> list[str]:
    """The lines of the ``count`` events appended last before the daemon (re)started."""
    lines = k.ok("audit", "tail", *args).stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if " daemon.started " in line) - count
    return lines[start : start + count]


def test_each_event_line_says_what_who_and_the_detail(sampled: Kontext) -> None:
    lines = appended(sampled, len(SAMPLES), "-n", "100")
    for line, (event, detail) in zip(lines, SAMPLES, strict=True):
        name = str(event["event"])
        assert re.fullmatch(rf"{CLOCK} {re.escape(f'{name:<18}')} {re.escape(detail)}", line)
    assert appended(sampled, len(SAMPLES), "-n100") == lines  # the typer path alike


def test_a_line_with_nothing_after_the_name_has_no_trailing_space(sampled: Kontext) -> None:
    append(sampled, [{"event": "daemon.stopped"}, {"event": "api.call", "method": "GET"}])
    first, second = appended(sampled, 2, "-n", "100")
    assert re.fullmatch(rf"{CLOCK} daemon\.stopped", first)
    assert re.fullmatch(rf"{CLOCK} api\.call {{11}}GET", second)


def append_days_ago(k: Kontext, days: int, events: list[dict[str, object]]) -> None:
    """Append events as a daemon whose clock reads ``days`` earlier would (libfaketime)."""
    if not os.path.exists(LIBFAKETIME):
        pytest.skip("libfaketime is not installed (Debian: faketime)")
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from test_audit_fast import append;"
        "from conftest import Kontext; from pathlib import Path;"
        "append(Kontext(Path(sys.argv[2])), json.loads(sys.argv[3]))"
    )
    env = {**os.environ, "LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"-{days}d"}
    env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    tests = str(Path(__file__).parent)
    argv = [sys.executable, "-c", script, tests, str(k.home), json.dumps(events)]
    subprocess.run(argv, env=env, check=True, timeout=60)


def test_the_date_shows_when_the_events_are_not_all_from_today(sampled: Kontext) -> None:
    today = sampled.ok("audit", "tail", "-n", "3").stdout.splitlines()
    assert all(re.match(rf"{CLOCK} [a-z]", line) for line in today)
    append_days_ago(sampled, 2, [{"event": "daemon.stopped", "pid": 1}])
    append(sampled, [{"event": "daemon.stopped", "pid": 2}])
    fast = sampled.ok("audit", "tail", "-n", "3").stdout
    assert fast == sampled.ok("audit", "tail", "-n3").stdout
    lines = fast.splitlines()
    assert all(re.match(rf"{DATE} [a-z]", line) for line in lines), lines
    assert lines[1].endswith("daemon.stopped     pid 1") and lines[2].endswith("pid 2")
    assert lines[1][:10] != lines[2][:10]  # two days apart


def test_session_started_names_the_user_and_process_killed_the_pid(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    k.ok("login", env={"KX_EMAIL": "alice@acme.com", "KX_NAME": "Alice"}, tty=True)
    started = k.ok("audit", "tail", "--event", "session.started").stdout
    me = re.escape(os_user())  # the embedded issuer signs in the OS account
    # The local account's session (from the daemon's first start), then the login.
    assert re.fullmatch(
        rf"{CLOCK} session\.started    {me} \(local account\)\n"
        rf"{CLOCK} session\.started    {me} via http://\S+\n",
        started,
    )
    name = api_new_agent(k, "github:pulls:read", prefix="killed")
    sleeper = "import time; print('up', flush=True); time.sleep(60)"
    proc = k.popen("exec", "--agent", name, "--", sys.executable, "-c", sleeper)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        k.ok("revoke", f"agent:{name}", "--kill")
        assert proc.wait(timeout=30) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    killed = [e for e in k.audit(agent=name) if e["event"] == "process.killed"]
    assert killed
    line = k.ok("audit", "tail", "--agent", name, "--event", "process.killed").stdout
    assert re.fullmatch(
        rf"{CLOCK} process\.killed     agent:{name} pid {killed[0]['pid']} SIGTERM\n", line
    )


def test_a_repeated_consent_revoke_records_nothing(kx: Kontext) -> None:
    name = kx.agent("github:pulls:read", prefix="revoke-twice")
    assert (
        kx.ok("consent", "revoke", f"agent:{name}").stdout == f"revoked 1 grant to agent:{name}\n"
    )
    again = kx.ok("consent", "revoke", f"agent:{name}").stdout
    assert again == f"agent:{name} has no live grants: nothing to revoke\n"
    revoked = [e for e in kx.audit(agent=name) if e["event"] == "consent.revoked"]
    assert [e["grants"] for e in revoked] == [revoked[0]["grants"]] and revoked[0]["grants"]


def test_follow_keeps_the_date_once_shown(sampled: Kontext, tmp_path: Path) -> None:
    append_days_ago(sampled, 3, [{"event": "daemon.stopped", "pid": 1}])
    sampled.start()
    out = tmp_path / "out"
    with out.open("w") as sink:
        proc = sampled.popen("audit", "tail", "-f", "-n", "2", stdout=sink)
        try:
            assert wait_until(lambda: out.read_text().count("\n") >= 2, timeout=30)
            sampled.agent("github:pulls:read", prefix="followed", consent=False)
            assert wait_until(lambda: "agent.created" in out.read_text(), timeout=30)
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
    lines = out.read_text().splitlines()
    assert len(lines) >= 3 and all(re.match(rf"{DATE} [a-z]", line) for line in lines), lines
