"""Shared parts of the benchmarks: the plan, report tables, the daemon under test, load helpers."""

from __future__ import annotations

import http.client
import http.server
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
KONTEXT = str(BIN / "kontext")
KONTEXTD = str(BIN / "kontextd")
TRUE = shutil.which("true") or "/bin/true"
AGENT = "bench"
SCOPES = ("github:pulls:read", "github:pulls:write", "github:contents:read")


@dataclass(frozen=True)
class Plan:
    """How much of everything to do."""

    exec_runs: int
    cold_starts: int
    issue_levels: tuple[int, ...]
    issue_seconds: float
    http_clients: tuple[int, ...]
    http_seconds: float
    revoke_runs: int
    kill_runs: int
    third_party: bool  # also run npm oidc-provider (needs node and npm)
    audit_events: int
    audit_runs: int  # of `audit tail -n 100` (each way) and of `audit verify`
    regular_install: bool  # also time exec from a wheel in a fresh venv
    plane_clients: tuple[int, ...]  # wrk clients for /token (issue 18)
    plane_seconds: float  # per wrk run
    plane_sequential: int  # sequential gateway calls for the added p50
    plane_mib: int  # streamed download through the gateway
    plane_rounds: int  # paired direct/gateway rounds (after a warm-up); the median counts
    idle_connections: int
    dashboard_rounds: int  # paired rounds of figure 9 (none open, then some open)
    dashboard_streams: int  # open dashboards in figure 9
    dashboard_execs: int  # exec runs per round
    dashboard_seconds: float  # issuance per round
    dashboard_latency: int  # issuances timed to their event on an open stream
    dashboard_idle: float  # seconds of idle CPU measured
    library_seconds: float  # per concurrency level of library_bench.py


FULL = Plan(
    exec_runs=60,
    cold_starts=30,
    issue_levels=(1, 8, 32, 128),
    issue_seconds=5.0,
    http_clients=(1, 8),
    http_seconds=4.0,
    revoke_runs=30,
    kill_runs=30,
    third_party=True,
    audit_events=1_000_000,
    audit_runs=30,
    regular_install=True,
    plane_clients=(1, 8, 32, 128),
    plane_seconds=5.0,
    plane_sequential=2000,
    plane_mib=64,
    plane_rounds=3,
    idle_connections=2000,
    dashboard_rounds=8,
    dashboard_streams=20,
    dashboard_execs=15,
    dashboard_seconds=2.0,
    dashboard_latency=40,
    dashboard_idle=5.0,
    library_seconds=5.0,
)
QUICK = Plan(
    exec_runs=5,
    cold_starts=2,
    issue_levels=(1, 8, 32),
    issue_seconds=0.5,
    http_clients=(4,),
    http_seconds=0.5,
    revoke_runs=3,
    kill_runs=3,
    third_party=False,
    audit_events=20_000,
    audit_runs=3,
    regular_install=False,
    plane_clients=(8,),
    plane_seconds=1.0,
    plane_sequential=100,
    plane_mib=4,
    plane_rounds=1,
    idle_connections=200,
    dashboard_rounds=1,
    dashboard_streams=5,
    dashboard_execs=3,
    dashboard_seconds=0.5,
    dashboard_latency=5,
    dashboard_idle=0.5,
    library_seconds=0.5,
)


# ---------------------------------------------------------------------------
# Statistics and reporting
# ---------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


@dataclass
class Section:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join(" --- " for _ in self.columns) + "|"
        body = ["| " + " | ".join(row) + " |" for row in self.rows]
        notes = [f"\n{note}" for note in self.notes]
        return "\n".join([f"### {self.title}", "", head, rule, *body, *notes, ""])


@dataclass
class Target:
    what: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run

    def row(self) -> tuple[str, ...]:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[self.met]
        return (self.what, self.goal, self.measured, verdict)


# ---------------------------------------------------------------------------
# The daemon under test
# ---------------------------------------------------------------------------


class Daemon:
    """A kontextd in its own KONTEXT_HOME, started and stopped by us."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "KONTEXT_HOME": str(home), "NO_COLOR": "1"}
        for var in ("KONTEXT_TOKEN", "KONTEXT_AGENT", "KONTEXT_DEBUG"):
            self.env.pop(var, None)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        return str(self.home / "run" / "control.sock")

    @property
    def port(self) -> int:
        return int(json.loads((self.home / "run" / "http.json").read_text())["port"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Start kontextd; returns seconds until its control socket answered."""
        began = time.perf_counter()
        self.proc = subprocess.Popen(
            [KONTEXTD, "--detach-stderr"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        said = self.proc.stderr.read().decode(errors="replace")  # EOF once it is ready
        self.proc.stderr.close()
        if "ready" not in said:
            raise RuntimeError(f"kontextd did not start: {said.strip()}")
        self.call("GET", "/v1/status")
        return time.perf_counter() - began

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def connect(self) -> Any:
        from kontext_cli import client

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket)
        return client.Connection(sock)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        with self.connect() as conn:
            return conn.call(method, path, body)

    def kontext(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [KONTEXT, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kontext {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def create_agent(self, name: str) -> None:
        self.call("POST", "/v1/agents", {"name": name, "allow": list(SCOPES), "max_ttl": 3600})
        self.approve(name)

    def approve(self, name: str) -> None:
        """Approve the agent's scopes once, before timing, on the real consent page, as
        the tests' harness does (push, read the page's CSRF token, click Approve)."""
        sys.path.insert(0, str(HERE.parent))
        from tests.conftest import Kontext, approve_over_http

        approve_over_http(Kontext(self.home), name, list(SCOPES))


def introspect(conn: http.client.HTTPConnection, token: str) -> dict[str, Any]:
    body = urllib.parse.urlencode({"token": token})
    conn.request("POST", "/introspect", body, {"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    answer: dict[str, Any] = json.loads(response.read())
    return answer


@contextmanager
def fresh_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="kb-", dir="/tmp"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _spread(clients: int, processes: int) -> list[int]:
    """Split ``clients`` threads over at most ``processes`` processes."""
    count = min(clients, processes)
    return [clients // count + (1 if i < clients % count else 0) for i in range(count)]


def run_load(
    worker: Callable[[Any], list[float]], clients: int, seconds: float, extra: tuple[Any, ...]
) -> tuple[float, list[float]]:
    """Run ``clients`` concurrent clients for ``seconds``; returns (per second, latencies)."""
    shares = _spread(clients, processes=4)
    start_at = time.time() + 0.5
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(shares)) as pool:
        parts = pool.map(worker, [(*extra[:2], n, start_at, seconds, *extra[2:]) for n in shares])
    latencies = [x for part in parts for x in part]
    return len(latencies) / seconds, latencies


@contextmanager
def nothing() -> Iterator[None]:
    yield None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_leases_to_end(daemon: Daemon, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while daemon.call("GET", "/v1/status")["live_credentials"] and time.monotonic() < deadline:
        time.sleep(0.05)


def timed_run(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{argv}: exit {proc.returncode}: {proc.stderr.decode()[-300:]}")
    return elapsed


def proc_status(pid: int, field: str) -> int:
    """An integer field of /proc/PID/status (``VmRSS`` in kB, ``Threads``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


# ---------------------------------------------------------------------------
# Two builds, interleaved (bench/ab_plane.py, bench/ab_issuance.py)
# ---------------------------------------------------------------------------


def compare_builds(
    before_bin: str, rounds: int, measure: Callable[[str], dict[str, float]]
) -> None:
    """Run ``measure`` (a build's ``bin`` directory -> its figures) for the build in
    ``before_bin`` and for this one alternately, ``rounds`` times, and print each
    figure's median per build, then every round's figures for the spread."""
    builds = {"before": str(Path(before_bin)), "after": str(BIN)}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    for _ in range(rounds):
        for name, bin_dir in builds.items():
            runs[name].append(measure(bin_dir))
    print(f"| figure (median of {rounds} interleaved rounds) | before | after |")
    print("| --- | --- | --- |")
    for key in runs["after"][0]:
        before = statistics.median(r[key] for r in runs["before"])
        after = statistics.median(r[key] for r in runs["after"])
        print(f"| {key} | {before:,.2f} | {after:,.2f} |")
    print()
    for name in builds:  # every round, for the spread the medians hide
        for key in runs[name][0]:
            print(f"{name} {key}: " + " / ".join(f"{r[key]:,.2f}" for r in runs[name]))
