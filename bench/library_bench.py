"""Library benchmark: ``kontext.require`` per second and its latency, 1/8/32 callers.

::

    .venv/bin/python bench/library_bench.py            # full (~40 s); prints Markdown
    .venv/bin/python bench/library_bench.py --quick    # smoke run (~10 s)

``bench/run.py`` runs it too and puts its section beside the exec figures.

A real kontextd runs in a throw-away KONTEXT_HOME under /tmp. The callers are
threads of one process started by ``kontext exec`` — a long-running agent whose
authority is its exec credential, as in production — each calling
``kontext.require("github")`` in a loop: every call is an RFC 8693 exchange at
the loopback ``/token``, through the request path, stored and audited. Measured
per level: requires/s, p50 and p99 latency, and the daemon's CPU per require
(utime + stime from /proc/PID/stat over the level, divided by the calls).

The baseline, in the same run and the same process: the same number of threads
POSTing a form to the daemon's ``/introspect`` over the same kind of kept-alive
``http.client`` connection (an inactive token: the cheapest form route there
is, so it is the floor of one loopback HTTP round trip through the daemon).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 8, 32)
SCOPE = "github:pulls:read"


@dataclass
class Level:
    """One concurrency level of one thing measured."""

    what: str
    callers: int
    latencies: list[float]
    seconds: float
    daemon_cpu: float  # seconds of daemon CPU over the level

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def cpu_per_call(self) -> float:
        return self.daemon_cpu / max(1, len(self.latencies))


@dataclass
class Figures:
    """Everything measured, and the Markdown and targets made from it."""

    levels: list[Level] = field(default_factory=list)

    def find(self, what: str, callers: int) -> Level | None:
        return next((x for x in self.levels if (x.what, x.callers) == (what, callers)), None)

    def rows(self) -> list[tuple[str, ...]]:
        out = []
        for lvl in self.levels:
            base = self.find("baseline", lvl.callers)
            ratio = f"{base.rate / lvl.rate:.2f}x" if base and lvl.what != "baseline" else "-"
            out.append(
                (
                    "`kontext.require`"
                    if lvl.what == "require"
                    else "baseline: `POST /introspect`",
                    str(lvl.callers),
                    f"{lvl.rate:,.0f}/s",
                    f"{percentile(lvl.latencies, 50) * 1000:.2f} ms",
                    f"{percentile(lvl.latencies, 99) * 1000:.2f} ms",
                    f"{lvl.cpu_per_call * 1000:.2f} ms",
                    ratio,
                )
            )
        return out

    def targets(self) -> list[tuple[str, str, str, bool | None]]:
        one = self.find("require", 1)
        if one is None:
            return []
        p50 = percentile(one.latencies, 50)
        return [
            ("require p50, end to end (1 caller)", "<= 2 ms", f"{p50 * 1000:.2f} ms", p50 <= 0.002),
            (
                "require, daemon CPU per call (1 caller)",
                "<= 1 ms",
                f"{one.cpu_per_call * 1000:.2f} ms",
                one.cpu_per_call <= 0.001,
            ),
        ]

    def markdown(self) -> str:
        head = "| " + " | ".join(COLUMNS) + " |"
        rule = "|" + "|".join(" --- " for _ in COLUMNS) + "|"
        body = ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join([f"### {TITLE}", "", head, rule, *body, "", NOTE, ""])


TITLE = "Library: `kontext.require` (RFC 8693 exchange at the loopback /token)"
COLUMNS = ("what", "callers", "rate", "p50", "p99", "daemon CPU/call", "baseline rate ÷ rate")
NOTE = (
    "Callers are threads of one process under `kontext exec` (its credential is the "
    "authority); each call is a new credential through the request path, stored and "
    "audited. Baseline: the same threads POSTing a form to `/introspect`. Not counted: "
    "each credential's later expiry (one more audited write, 60 s on)."
)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- in the exec'd worker ----------------------------------------------------


def _callers(call: Any, callers: int, seconds: float, pid: int, what: str) -> Level:
    """``callers`` threads calling ``call()`` for ``seconds``; latencies of each call."""
    results: list[list[float]] = [[] for _ in range(callers)]
    start = threading.Barrier(callers + 1)
    deadline = [0.0]

    def loop(out: list[float]) -> None:
        start.wait()
        while (began := time.perf_counter()) < deadline[0]:
            call()
            out.append(time.perf_counter() - began)

    threads = [threading.Thread(target=loop, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    cpu_before, began = cpu_seconds(pid), time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies = [x for out in results for x in out]
    return Level(what, callers, latencies, elapsed, cpu_seconds(pid) - cpu_before)


def _introspect_call(issuer: str) -> Any:
    """The baseline: one kept-alive connection per thread, a form POST to /introspect."""
    import http.client
    import urllib.parse

    local = threading.local()
    parsed = urllib.parse.urlsplit(issuer)
    body = b"token=not-a-token"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def call() -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
        conn.request("POST", "/introspect", body=body, headers=headers)
        conn.getresponse().read()

    return call


def worker(pid: int, seconds: float) -> None:
    """Runs under ``kontext exec``: measure, print one JSON line of levels."""
    import kontext

    issuer = kontext.require("github").base_url.partition("/gw/")[0]
    baseline = _introspect_call(issuer)
    for _ in range(200):  # warm both paths: connections, caches, the daemon's JIT-free paths
        kontext.require("github")
        baseline()
    levels = []
    for callers in LEVELS:
        levels.append(_callers(baseline, callers, seconds, pid, "baseline"))
        levels.append(_callers(lambda: kontext.require("github"), callers, seconds, pid, "require"))
    print(json.dumps([lvl.__dict__ for lvl in levels]), flush=True)


# -- the driver ----------------------------------------------------------------


def bench_library(plan: Any) -> tuple[Any, list[Any]]:
    """For ``run.py``: this benchmark as a report section (2b, beside exec and
    issuance) and its targets, with ``plan.library_seconds`` per level."""
    from common import Section, Target

    figures = measure(plan.library_seconds)
    section = Section(f"2b. {TITLE}", COLUMNS)
    section.rows += figures.rows()
    section.notes.append(NOTE)
    return section, [Target(*target) for target in figures.targets()]


def measure(seconds: float) -> Figures:
    """Start a daemon and an agent, run the worker under ``kontext exec``, return figures."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import KONTEXT, Kontext, api_new_agent

    home = Path(tempfile.mkdtemp(prefix="kx-lib-", dir="/tmp"))
    k = Kontext(home)
    try:
        k.start()
        # Connected (to nothing: the bench never calls the gateway), or the exchange
        # would rightly refuse: a broker credential is useless without a connection.
        k.ok(
            "integration",
            "connect",
            "github",
            "--secret-stdin",
            "--no-verify",
            input="bench-key-unused\n",
        )
        agent = api_new_agent(k, SCOPE, prefix="bench-lib", max_ttl=3600)
        proc = subprocess.run(
            [KONTEXT, "exec", "--agent", agent, "--ttl", "1h", "--", sys.executable,
             __file__, "--worker", str(k.daemon_pid), str(seconds)],
            env=k.env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"library bench worker failed: {proc.stderr.strip()[-500:]}")
        return Figures([Level(**lvl) for lvl in json.loads(proc.stdout.splitlines()[-1])])
    finally:
        k.stop()
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 0.5 s per level")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per level")
    parser.add_argument("--worker", nargs=2, metavar=("PID", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(int(args.worker[0]), float(args.worker[1]))
        return 0
    seconds = args.seconds or (0.5 if args.quick else 5.0)
    figures = measure(seconds)
    print(figures.markdown())
    for what, goal, measured, met in figures.targets():
        print(f"- {what}: {measured} (goal {goal}) {'met' if met else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
