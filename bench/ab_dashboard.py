"""Before/after of what open dashboards cost per credential: two daemon builds, alternated.

::

    .venv/bin/python bench/ab_dashboard.py [--base REF] [--sittings 3] [--pairs 3] [--seconds 3]

Figure 9's issuance ratio moves ±7% from run to run on a shared two-core machine,
more than a dashboard change is worth. This weighs a change by the daemon's own CPU
time instead (``/proc/PID/task/*/schedstat``, as figure 9 does): per credential
issued at 32 clients with no dashboard open, then with figure 9's 20 open
(``dashboard_clients.py``), in pairs, in a fresh daemon per sitting; sittings
alternate between the build at ``REF`` (its ``daemon/`` from ``git archive``, put
first on the daemon's ``PYTHONPATH``) and this checkout. Besides the whole daemon's
ratio it gives the CPU of the threads that serve the dashboard (``loopback`` and
its ``loopback-io`` executor, named by ``py-spy dump``) per credential: work only
open pages cause, much less moved by the machine's load than the whole ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import common
from common import AGENT, Daemon, fresh_home, run_load, wait_for_leases_to_end
from dashboard_bench import dashboards
from issuance import _issue_worker

STREAMS = 20
PY_SPY = str(Path(sys.executable).parent / "py-spy")


def thread_names(pid: int) -> dict[int, str]:
    """Thread id -> the Python thread's name (``py-spy dump``)."""
    text = subprocess.run([PY_SPY, "dump", "-p", str(pid)], capture_output=True, text=True).stdout
    return {int(m[1]): m[2] for m in re.finditer(r'Thread (\d+) \([^)]*\): "([^"]*)"', text)}


def thread_ns(pid: int) -> dict[int, int]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue  # the thread ended
    return out


def issue(daemon: Daemon, seconds: float) -> tuple[float, float]:
    """Issuance at 32 clients: (daemon ns per credential, the web threads' ns per credential)."""
    before = thread_ns(daemon.pid)
    _, latencies = run_load(_issue_worker, 32, seconds, (daemon.socket, AGENT))
    wait_for_leases_to_end(daemon)
    after, names = thread_ns(daemon.pid), thread_names(daemon.pid)
    count = max(1, len(latencies))
    total = sum(after.values()) - sum(before.get(t, 0) for t in after)
    web = sum(
        ns - before.get(t, 0) for t, ns in after.items() if names.get(t, "").startswith("loopback")
    )
    return total / count, web / count


def sitting(pythonpath: str | None, pairs: int, seconds: float) -> list[tuple[float, float, float]]:
    """(closed ns/credential, open ns/credential, open web-thread ns/credential) per pair."""
    saved = os.environ.pop("PYTHONPATH", None)
    if pythonpath:
        os.environ["PYTHONPATH"] = pythonpath
    out = []
    try:
        with fresh_home() as home:
            daemon = Daemon(home)
            daemon.start()
            os.environ["KONTEXT_HOME"] = str(home)
            try:
                daemon.create_agent(AGENT)
                issue(daemon, 1.0)  # warm up
                for _ in range(pairs):
                    closed, _ = issue(daemon, seconds)
                    with dashboards(daemon, STREAMS):
                        opened, web = issue(daemon, seconds)
                    out.append((closed, opened, web))
            finally:
                daemon.stop()
    finally:
        os.environ.pop("PYTHONPATH", None)
        if saved is not None:
            os.environ["PYTHONPATH"] = saved
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="the git ref to compare with")
    parser.add_argument("--sittings", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ab-dash-") as tmp:
        archive = subprocess.run(
            ["git", "archive", args.base, "daemon"],
            cwd=common.HERE.parent,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        builds = {args.base: f"{tmp}/daemon", "this checkout": None}
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in builds}
        for number in range(args.sittings):
            for name, path in builds.items():
                pairs = sitting(path, args.pairs, args.seconds)
                results[name] += pairs
                load = Path("/proc/loadavg").read_text().split()[0]
                said = " ".join(f"{o / c:.3f}" for c, o, _ in pairs)
                print(f"{name}, sitting {number + 1}: open/closed {said} (load {load})")
    print(
        "| build | CPU/credential, open / closed | extra µs/credential "
        "| web threads µs/credential (% of closed) |"
    )
    print("| --- | --- | --- | --- |")
    for name, rows in results.items():
        ratio = statistics.median(o / c for c, o, _ in rows)
        extra = statistics.median((o - c) / 1e3 for c, o, _ in rows)
        web = statistics.median(w / 1e3 for _, _, w in rows)
        share = statistics.median(w / c for c, _, w in rows) * 100
        print(f"| {name} | {ratio:.3f} | {extra:.0f} | {web:.1f} ({share:.1f}%) |")


if __name__ == "__main__":
    main()
