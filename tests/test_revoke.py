"""``kontext revoke``: an agent (all its live credentials at once, optionally its processes),
or one credential; and ``agent delete``, which revokes first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import (
    Kontext,
    api_agent,
    api_audit,
    api_new_agent,
    one_line_error,
    running_home,
    wait_until,
)


def exec_runs(k: Kontext, agent: str) -> bool:
    proc = k.run("exec", "--agent", agent, "--", sys.executable, "-c", "print('ran')")
    return proc.returncode == 0 and proc.stdout == "ran\n"


def live_count(k: Kontext, agent: str) -> int:
    return int(api_agent(k, agent)["live_credentials"])


def test_revoke_agent_kills_every_live_credential_at_once(kx: Kontext) -> None:
    target = api_new_agent(kx, "github:pulls:read", prefix="rv")
    bystander = api_new_agent(kx, "github:pulls:read", prefix="rv-other")
    first, first_env = kx.token_for(target)
    second, second_env = kx.token_for(target)
    other, other_env = kx.token_for(bystander)
    try:
        assert live_count(kx, target) == 2
        done = kx.ok("revoke", f"agent:{target}")
        assert done.stdout == (
            f"revoked agent:{target}: 2 live credential(s) revoked; "
            f"undo with 'kontext agent enable {target}'\n"
        )
        # Both tokens are dead the moment the command returns.
        assert kx.introspect(first_env["KONTEXT_TOKEN"]) == {"active": False}
        assert kx.introspect(second_env["KONTEXT_TOKEN"]) == {"active": False}
        assert live_count(kx, target) == 0
        # The other agent is untouched: its live token and its new ones work.
        assert kx.introspect(other_env["KONTEXT_TOKEN"])["active"] is True
        assert exec_runs(kx, bystander)
        # The revoked agent gets nothing new.
        line = one_line_error(kx.run("exec", "--agent", target, "--", "true"), 122)
        assert line.startswith(f"kontext: denied by agent permissions: agent:{target} is disabled")
    finally:
        for proc in (first, second, other):
            kx.close(proc)
    # Without --kill the children were left to finish on their own.
    assert (first.returncode, second.returncode, other.returncode) == (0, 0, 0)

    # Revoking an already-revoked agent is harmless and says there was nothing live.
    again = kx.ok("revoke", f"agent:{target}")
    assert "0 live credential(s) revoked" in again.stdout


def test_revoke_agent_takes_the_bare_name_as_every_command_does(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="rv")
    assert kx.ok("revoke", name).stdout.startswith(f"revoked agent:{name}: ")
    assert not exec_runs(kx, name)  # revoked, as with agent:NAME


def test_revoke_kill_terminates_the_running_child(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="kill")
    proc, env = kx.token_for(name)
    try:
        done = kx.ok("revoke", f"agent:{name}", "--kill")
        assert done.stdout.startswith(
            f"revoked agent:{name}: 1 live credential(s) revoked, 1 process(es) terminated;"
        )
        assert kx.introspect(env["KONTEXT_TOKEN"]) == {"active": False}
        # The child dies by SIGTERM and exec passes that on: it dies by the same signal.
        assert proc.wait(timeout=5) == -signal.SIGTERM
    finally:
        kx.close(proc)
    events = [e for e in api_audit(kx, agent=name) if e["event"] == "process.killed"]
    assert len(events) == 1
    assert events[0]["signal"] == "SIGTERM"
    assert events[0]["jti"] == env["KONTEXT_CREDENTIAL_ID"]


def test_revoke_kill_reaches_a_child_that_ignores_sigterm(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="kill")
    stubborn = (
        "import signal,sys;signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('ready',flush=True);sys.stdin.read()"
    )
    proc = kx.popen(
        "exec", "--agent", name, "--", sys.executable, "-c", stubborn, stdin=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        kx.ok("revoke", f"agent:{name}", "--kill")
        # After a grace period the daemon follows up with SIGKILL.
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        kx.close(proc)


def test_revoke_one_credential_leaves_its_sibling(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="one")
    first, first_env = kx.token_for(name)
    second, second_env = kx.token_for(name)
    try:
        jti = first_env["KONTEXT_CREDENTIAL_ID"]
        assert kx.ok("revoke", "credential", jti).stdout == f"revoked credential {jti}\n"
        assert kx.introspect(first_env["KONTEXT_TOKEN"]) == {"active": False}
        assert kx.introspect(second_env["KONTEXT_TOKEN"])["active"] is True
        assert live_count(kx, name) == 1
        # The agent itself stays enabled.
        assert exec_runs(kx, name)
        # Revoking it twice says it had already ended, how and when: exit 15, not "revoked".
        line = one_line_error(kx.run("revoke", "credential", jti), 19)
        assert line.startswith(f"kontext: credential {jti} had already ended (revoked at ")
        assert line.endswith(": revoked by user:" + line.split("revoked by user:")[1])
        assert line.endswith("; nothing was revoked")
    finally:
        kx.close(first)
        kx.close(second)
    events = [e for e in api_audit(kx, agent=name) if e["event"] == "credential.revoked"]
    by_jti = {e["jti"]: e for e in events}
    assert by_jti[jti]["reason"].startswith("revoked by user:")
    assert by_jti[second_env["KONTEXT_CREDENTIAL_ID"]]["reason"].startswith("lease closed")


def test_revoke_a_finished_credential_reports_it(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="one")
    proc, env = kx.token_for(name)
    kx.close(proc)
    jti = env["KONTEXT_CREDENTIAL_ID"]
    line = one_line_error(kx.run("revoke", "credential", jti), 19)
    assert f"credential {jti} had already ended (revoked at " in line
    assert "lease closed: the process exited with status 0); nothing was revoked" in line


BAD_ARGS = {
    "no-kind": ["PR Reviewer"],
    "user-prefix": ["user:alice"],
    "bad-agent-name": ["agent:PR_Reviewer"],
    "empty-agent": ["agent:"],
    "credential-without-jti": ["credential"],
    "credential-with-kill": ["credential", "abcdefghijklmnop", "--kill"],
    "malformed-jti": ["credential", "x"],
    "jti-with-slash": ["credential", "abcdefghij/klmnop"],
    "agent-with-extra": ["agent:pr-reviewer", "extra"],
}


@pytest.fixture(scope="module")
def quiet_kx() -> Iterator[Kontext]:
    """A home of this module's own, with nothing live: on the shared daemon another
    test's grant or credential can expire (an audit event) between the two reads."""
    with running_home() as k:
        yield k


@pytest.mark.parametrize("args", BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_bad_revoke_arguments(quiet_kx: Kontext, args: list[str]) -> None:
    with quiet_kx.control() as api:
        before = api.get("/v1/audit", params={"last": 1}).json()["last_id"]
    one_line_error(quiet_kx.run("revoke", *args), 2)
    with quiet_kx.control() as api:
        assert api.get("/v1/audit", params={"last": 1}).json()["last_id"] == before


def test_revoke_unknown_things(kx: Kontext) -> None:
    nobody = f"nobody-{os.getpid()}"
    line = one_line_error(kx.run("revoke", f"agent:{nobody}"), 3)
    assert nobody in line
    line = one_line_error(kx.run("revoke", f"agent:{nobody}", "--kill"), 3)
    line = one_line_error(kx.run("revoke", "credential", "A" * 22), 3)
    assert "A" * 22 in line


def test_agent_delete_revokes_its_live_credentials(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:issues:read", prefix="del")
    proc, env = kx.token_for(name)
    try:
        assert kx.introspect(env["KONTEXT_TOKEN"])["active"] is True
        kx.ok("agent", "delete", name)
        assert kx.introspect(env["KONTEXT_TOKEN"]) == {"active": False}
        line = one_line_error(kx.run("exec", "--agent", name, "--", "true"), 125)
        assert line.startswith(f"kontext: no agent named {name}; ")
    finally:
        kx.close(proc)
    assert proc.returncode == 0
    events = api_audit(kx, agent=name)
    revoked = [e for e in events if e["event"] == "credential.revoked"]
    assert [e["reason"] for e in revoked] == ["agent deleted"]
    assert [e["event"] for e in events][-4:] == [
        "credential.revoked",
        "consent.revoked",  # its grants too: a namesake created later inherits none
        "agent.deleted",
        "credential.denied",
    ]
    assert events[-3]["reason"] == "agent deleted"


def test_a_recreated_agent_does_not_revive_old_credentials(kx: Kontext) -> None:
    name = api_new_agent(kx, "github:issues:read", prefix="del")
    proc, env = kx.token_for(name)
    try:
        kx.ok("agent", "delete", name)
        kx.ok("agent", "create", name, "--allow", "github:issues:read")
        assert kx.introspect(env["KONTEXT_TOKEN"]) == {"active": False}
        assert wait_until(lambda: live_count(kx, name) == 0)
    finally:
        kx.close(proc)


# -- --kill ends the whole tree of every exec (issue 17.4) -----------------------------------

# The command hides three processes from a naive kill: a new session (setsid -f), a
# double-forked orphan (its parent exits at once) and a background job in a process
# group of its own, one of them ignoring SIGTERM; each writes its pid to DIR.
TREE = r"""
import os, signal, subprocess, sys, time
where = sys.argv[1]
def note(name):
    with open(os.path.join(where, name), "w") as fh:
        fh.write(str(os.getpid()))
subprocess.run(["setsid", "-f", sys.executable, "-c",
    "import os,sys,time;open(sys.argv[1],'w').write(str(os.getpid()));time.sleep(600)",
    os.path.join(where, "setsid")], check=True)
if os.fork() == 0:
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("orphan")
        time.sleep(600)
        os._exit(0)
    os._exit(0)
subprocess.Popen(["sh", "-c", "echo $$ > " + os.path.join(where, "group") + "; exec sleep 600"],
                 process_group=0)
print("ready", flush=True)
sys.stdin.read()
"""
TREE_PIDS = ("setsid", "orphan", "group")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _start_tree(k: Kontext, agent: str, where: str, *flags: str) -> subprocess.Popen[str]:
    os.makedirs(where, exist_ok=True)
    proc = k.popen(
        "exec",
        "--agent",
        agent,
        *flags,
        "--",
        sys.executable,
        "-c",
        TREE,
        where,
        stdin=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
    files = [os.path.join(where, n) for n in TREE_PIDS]
    assert wait_until(lambda: all(os.path.exists(f) and os.path.getsize(f) for f in files))
    return proc


def _tree_pids(where: str) -> list[int]:
    pids = []
    for name in TREE_PIDS:
        with open(os.path.join(where, name)) as fh:
            pids.append(int(fh.read()))
    return pids


def test_revoke_kill_ends_the_whole_tree_of_every_exec(kx: Kontext, tmp_path: object) -> None:
    name = api_new_agent(kx, "github:pulls:read", prefix="tree")
    confined = _start_tree(kx, name, f"{tmp_path}/confined")
    unconfined = _start_tree(kx, name, f"{tmp_path}/unconfined", "--no-confine")
    pids = _tree_pids(f"{tmp_path}/confined") + _tree_pids(f"{tmp_path}/unconfined")
    try:
        assert all(_alive(pid) for pid in pids)
        done = kx.ok("revoke", f"agent:{name}", "--kill")
        assert "2 live credential(s) revoked" in done.stdout
        # The one ignoring SIGTERM gets SIGKILL after the grace period.
        assert wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=30), [
            pid for pid in pids if _alive(pid)
        ]
        assert confined.wait(timeout=30) == -signal.SIGTERM
        assert unconfined.wait(timeout=30) == -signal.SIGTERM
    finally:
        for proc in (confined, unconfined):
            kx.close(proc) if proc.poll() is not None else proc.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    events = [e for e in api_audit(kx, agent=name) if e["event"] == "process.killed"]
    assert len(events) == 2
    assert set(pids) <= {pid for e in events for pid in e["pids"]}


def test_what_a_command_leaves_behind_ends_with_its_exec(kx: Kontext, tmp_path: object) -> None:
    """The wrapper is its tree's subreaper: orphans do not outlive the exec."""
    name = api_new_agent(kx, "github:pulls:read", prefix="leftover")
    where = f"{tmp_path}/tree"
    proc = _start_tree(kx, name, where)
    pids = _tree_pids(where)
    assert proc.stdin is not None
    proc.stdin.close()  # the command exits; its orphans are still running
    assert proc.wait(timeout=60) == 0
    assert not [pid for pid in pids if _alive(pid)]
    kx.close(proc)


def test_revoke_kill_spares_the_daemon_its_exec_started(fresh_kx: Kontext) -> None:
    """An exec that starts kontextd is the daemon's parent: --kill ends the command's
    tree, never the daemon (a helper of the wrapper, not the agent's)."""
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("daemon", "stop")
    proc = fresh_kx.popen(
        "exec",
        "--agent",
        name,
        "--",
        sys.executable,
        "-c",
        "print('ready',flush=True);input()",
        stdin=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        daemon = fresh_kx.daemon_pid
        with open(f"/proc/{daemon}/stat") as fh:
            assert int(fh.read().rpartition(")")[2].split()[1]) == proc.pid  # its parent
        done = fresh_kx.ok("revoke", f"agent:{name}", "--kill")
        assert "1 process(es) terminated" in done.stdout  # the command, not the daemon
        assert proc.wait(timeout=30) == -signal.SIGTERM
        (killed,) = [e for e in api_audit(fresh_kx, agent=name) if e["event"] == "process.killed"]
        assert daemon not in killed["pids"]
        assert fresh_kx.daemon_pid == daemon and _alive(daemon)
    finally:
        if proc.poll() is None:
            proc.kill()
        fresh_kx.close(proc)
