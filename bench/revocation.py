"""4. Revocation latency: revoke -> inactive, SIGKILLed wrapper -> inactive."""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import statistics
import subprocess
import time

from common import AGENT, KONTEXT, Daemon, Plan, Section, introspect, ms, percentile


def _until_inactive(conn: http.client.HTTPConnection, token: str, since: float) -> float:
    deadline = since + 5.0
    while time.perf_counter() < deadline:
        if not introspect(conn, token)["active"]:
            return time.perf_counter() - since
    raise RuntimeError("credential still active 5 s after revocation")


def bench_revoke(daemon: Daemon, plan: Plan) -> tuple[Section, list[float], list[float]]:
    victim = "revoke-me"
    daemon.create_agent(victim)
    http_conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    after_revoke: list[float] = []
    cli_times: list[float] = []
    for _ in range(plan.revoke_runs):
        daemon.call("POST", f"/v1/agents/{victim}/enable")
        lease = daemon.connect()
        token = lease.call("POST", "/v1/credentials", {"agent": victim})["token"]
        assert introspect(http_conn, token)["active"]
        # This process holds the lease, as a kontext exec wrapper does: a command it
        # started would be inside the agent's tree, which the daemon refuses (the second
        # wall). So the revocation is asked here, on the control socket itself.
        began = time.perf_counter()
        daemon.call("POST", "/v1/revoke", {"agent": victim})
        returned = time.perf_counter()
        cli_times.append(returned - began)
        after_revoke.append(_until_inactive(http_conn, token, returned))
        lease.close()
    after_kill = [_killed_wrapper(daemon, http_conn) for _ in range(plan.kill_runs)]
    http_conn.close()
    section = Section(
        "4. Revocation latency",
        ("from", "to", "runs", "median", "p95", "baseline"),
    )
    section.rows.append(
        (
            "a revoke of agent:X returns",
            "introspection says inactive",
            str(len(after_revoke)),
            ms(statistics.median(after_revoke)),
            ms(percentile(after_revoke, 95)),
            f"the revoke request itself: median {ms(statistics.median(cli_times))}",
        )
    )
    section.rows.append(
        (
            "`kontext exec` wrapper SIGKILLed",
            "introspection says inactive",
            str(len(after_kill)),
            ms(statistics.median(after_kill)),
            ms(percentile(after_kill, 95)),
            "-",
        )
    )
    section.notes.append(
        "The first figure includes one introspection round trip: the credential is already "
        "inactive at the first request after `revoke` returns."
    )
    return section, after_revoke, after_kill


def _killed_wrapper(daemon: Daemon, http_conn: http.client.HTTPConnection) -> float:
    """``kontext exec`` whose child prints its token; SIGKILL the wrapper; time to inactive."""
    script = 'echo "$KONTEXT_TOKEN"; exec sleep 30'
    proc = subprocess.Popen(
        [KONTEXT, "exec", "--agent", AGENT, "--", "sh", "-c", script],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        token = proc.stdout.readline().decode().strip()
        assert introspect(http_conn, token)["active"]
        killed = time.perf_counter()
        proc.kill()  # the wrapper only: its child keeps running, orphaned
        return _until_inactive(http_conn, token, killed)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
