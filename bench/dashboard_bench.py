"""9. The dashboard (issue 15): what open dashboards cost exec and issuance.

Rounds alternate between no dashboard open and ``plan.dashboard_streams`` open ones
(``dashboard_clients.py``: a session each, the live event stream each page holds,
the Overview's reloads), and time the same work in each: ``kontext exec -- true``
runs and 32 clients issuing credentials. The figures are paired per round, so a
machine busier in one round than another moves both sides. Also: how soon a new
``credential.issued`` reaches an open stream, and what streams cost while nothing
happens (daemon CPU, threads).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    AGENT,
    HERE,
    KONTEXT,
    TRUE,
    Daemon,
    Plan,
    Section,
    Target,
    cpu_seconds,
    ms,
    percentile,
    proc_status,
    run_load,
    timed_run,
    wait_for_leases_to_end,
)
from issuance import _issue_worker

EXEC_ARGS = ("exec", "--agent", AGENT, "--", TRUE)
CLIENTS = 32


def open_session(daemon: Daemon) -> str:
    """A dashboard session as a browser gets one: a link, spent; the cookie."""
    url = str(daemon.call("POST", "/v1/dashboard/link")["url"])
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        conn.request("GET", url.split(str(daemon.port), 1)[1])
        answer = conn.getresponse()
        answer.read()
    finally:
        conn.close()
    if answer.status != 303:
        raise RuntimeError(f"the dashboard link answered {answer.status}")
    return str(answer.getheader("Set-Cookie")).split(";")[0]


@contextlib.contextmanager
def dashboards(daemon: Daemon, count: int) -> Iterator[dict[str, int]]:
    """``count`` open dashboards until the block ends; then what they received."""
    received: dict[str, int] = {}
    if count == 0:
        yield received
        return
    cookies = [open_session(daemon) for _ in range(count)]
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "dashboard_clients.py"), str(daemon.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n".join(cookies) + "\n\n")
    proc.stdin.flush()
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the dashboard clients did not start")
    began = cpu_seconds(proc.pid)
    try:
        yield received
    finally:
        received["client_cpu_ms"] = int((cpu_seconds(proc.pid) - began) * 1000)
        proc.stdin.close()
        received.update(json.loads(proc.stdout.readline() or "{}"))
        proc.wait(timeout=30)


@dataclass
class Round:
    exec_median: float
    issue_rate: float
    exec_cpu: float  # daemon CPU seconds per exec
    issue_cpu: float  # daemon CPU seconds per credential
    exec_total: float = 0.0  # CPU seconds per exec: the wrapper, its command and the daemon


@dataclass
class Figures:
    closed: list[Round] = field(default_factory=list)
    opened: list[Round] = field(default_factory=list)
    latency_closed: list[float] = field(default_factory=list)
    latency_open: list[float] = field(default_factory=list)
    received: int = 0
    client_cpu: float = 0.0  # seconds the dashboard clients' process used

    def exec_ratio(self) -> float:
        return statistics.median(o.exec_median / c.exec_median for c, o in self.pairs())

    def issue_ratio(self) -> float:
        return statistics.median(o.issue_rate / c.issue_rate for c, o in self.pairs())

    def cpu_ratio(self, field: str) -> float:
        return statistics.median(
            getattr(o, field) / getattr(c, field) for c, o in self.pairs() if getattr(c, field)
        )

    def pairs(self) -> list[tuple[Round, Round]]:
        return list(zip(self.closed, self.opened, strict=True))


def cpu_ns(pid: int) -> int:
    """Nanoseconds every thread of ``pid`` has run (``/proc/PID/task/*/schedstat``):
    the daemon's own cost, far finer than clock ticks and less moved by the rest of
    a busy machine than elapsed time."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def _work(daemon: Daemon, plan: Plan) -> Round:
    """The same work in every round: exec runs, then issuance at 32 clients; with the
    daemon's own CPU time for each."""
    cpu, kids = cpu_ns(daemon.pid), _children_cpu()
    runs = [timed_run([KONTEXT, *EXEC_ARGS], daemon.env) for _ in range(plan.dashboard_execs)]
    exec_cpu = (cpu_ns(daemon.pid) - cpu) / 1e9 / len(runs)
    exec_total = exec_cpu + (_children_cpu() - kids) / len(runs)
    cpu = cpu_ns(daemon.pid)
    rate, latencies = run_load(
        _issue_worker, CLIENTS, plan.dashboard_seconds, (daemon.socket, AGENT)
    )
    wait_for_leases_to_end(daemon)
    issue_cpu = (cpu_ns(daemon.pid) - cpu) / 1e9 / max(1, len(latencies))
    return Round(statistics.median(runs), rate, exec_cpu, issue_cpu, exec_total)


def _children_cpu() -> float:
    """User + system seconds of this process's reaped children (an exec's wrapper, and
    the command it reaped): with the daemon's, what one exec costs in all — a figure
    the rest of a busy machine moves far less than an exec's elapsed time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class StreamWatch:
    """One open dashboard stream, noting when each issued credential's event arrives."""

    def __init__(self, daemon: Daemon) -> None:
        cookie = open_session(daemon)
        self.sock = socket.create_connection(("127.0.0.1", daemon.port))
        self.sock.sendall(
            f"GET /dashboard/api/events?history=0&event=credential.issued HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{daemon.port}\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        self.seen: dict[str, float] = {}
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the dashboard stream did not open")

    def _read(self) -> None:
        kind = b""
        with contextlib.suppress(OSError), self.sock.makefile("rb") as lines:
            for line in lines:
                if line.startswith(b"event: "):
                    kind = line[7:].strip()
                    if kind == b"ready":
                        self.ready.set()
                elif line.startswith(b"data: ") and kind == b"audit":
                    event = json.loads(line[6:])["event"]
                    self.seen.setdefault(str(event.get("jti")), time.perf_counter())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _latencies(daemon: Daemon, count: int) -> list[float]:
    """From an issuance's answer to its ``credential.issued`` on an open stream."""
    watch = StreamWatch(daemon)
    body = json.dumps({"agent": AGENT}).encode()
    out = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(daemon.socket)
            sock.sendall(
                b"POST /v1/credentials HTTP/1.1\r\nHost: kontextd\r\nContent-Type: "
                b"application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            jti = _issued_jti(sock)
            answered = time.perf_counter()
            deadline = answered + 10
            while jti not in watch.seen and time.perf_counter() < deadline:
                time.sleep(0.0005)
            sock.close()
            out.append(max(0.0, watch.seen.get(jti, deadline) - answered))
            time.sleep(0.5)  # an exec after a quiet moment, as a person watching sees it
    finally:
        watch.close()
    return out


def _issued_jti(sock: socket.socket) -> str:
    """Read the 201 and return its jti (``issuance._read_response`` checks the framing)."""
    chunks = b""
    while b"\r\n\r\n" not in chunks or not chunks.rstrip().endswith(b"}"):
        data = sock.recv(65536)
        if not data:
            break
        chunks += data
    return str(json.loads(chunks.split(b"\r\n\r\n", 1)[1])["jti"])


def _idle(daemon: Daemon, streams: int, seconds: float) -> tuple[float, int]:
    """Daemon CPU seconds over ``seconds`` with nothing happening, and its threads."""
    with dashboards(daemon, streams):
        before = cpu_seconds(daemon.pid)
        time.sleep(seconds)
        return cpu_seconds(daemon.pid) - before, proc_status(daemon.pid, "Threads")


def bench_dashboard(daemon: Daemon, plan: Plan) -> tuple[Section, list[Target]]:
    streams = plan.dashboard_streams
    figures = Figures()
    for _ in range(plan.dashboard_rounds):
        figures.closed.append(_work(daemon, plan))
        with dashboards(daemon, streams) as received:
            figures.opened.append(_work(daemon, plan))
        figures.received += received.get("events", 0)
        figures.client_cpu += received.get("client_cpu_ms", 0) / 1000
    figures.latency_closed = _latencies(daemon, plan.dashboard_latency)
    with dashboards(daemon, streams):
        figures.latency_open = _latencies(daemon, plan.dashboard_latency)
    idle_closed, threads_closed = _idle(daemon, 0, plan.dashboard_idle)
    idle_open, threads_open = _idle(daemon, streams, plan.dashboard_idle)
    return _section(plan, figures, (idle_closed, idle_open), (threads_closed, threads_open))


def _section(
    plan: Plan, f: Figures, idle: tuple[float, float], threads: tuple[int, int]
) -> tuple[Section, list[Target]]:
    n = plan.dashboard_streams
    section = Section(
        f"9. The dashboard: 0 vs {n} open dashboards ({plan.dashboard_rounds} paired rounds)",
        ("figure", "no dashboard", f"{n} dashboards open", "ratio"),
    )
    exec_closed = statistics.median(r.exec_median for r in f.closed)
    exec_open = statistics.median(r.exec_median for r in f.opened)
    rate_closed = statistics.median(r.issue_rate for r in f.closed)
    rate_open = statistics.median(r.issue_rate for r in f.opened)
    section.rows += [
        ("`kontext exec -- true`, median", ms(exec_closed), ms(exec_open), f"{f.exec_ratio():.3f}"),
        (
            f"issuance at {CLIENTS} clients",
            f"{rate_closed:,.0f}/s",
            f"{rate_open:,.0f}/s",
            f"{f.issue_ratio():.3f}",
        ),
        (
            "issued -> on an open stream, p50 / p99",
            f"{ms(statistics.median(f.latency_closed))} / {ms(percentile(f.latency_closed, 99))}",
            f"{ms(statistics.median(f.latency_open))} / {ms(percentile(f.latency_open, 99))}",
            "-",
        ),
        (
            "daemon CPU per exec",
            ms(statistics.median(r.exec_cpu for r in f.closed)),
            ms(statistics.median(r.exec_cpu for r in f.opened)),
            f"{f.cpu_ratio('exec_cpu'):.3f}",
        ),
        (
            "CPU per exec in all (wrapper, command, daemon)",
            ms(statistics.median(r.exec_total for r in f.closed)),
            ms(statistics.median(r.exec_total for r in f.opened)),
            f"{f.cpu_ratio('exec_total'):.3f}",
        ),
        (
            "daemon CPU per credential",
            ms(statistics.median(r.issue_cpu for r in f.closed)),
            ms(statistics.median(r.issue_cpu for r in f.opened)),
            f"{f.cpu_ratio('issue_cpu'):.3f}",
        ),
        (
            f"daemon CPU over {plan.dashboard_idle:.0f} s idle",
            f"{idle[0]:.2f} s",
            f"{idle[1]:.2f} s",
            "-",
        ),
        ("daemon threads", str(threads[0]), str(threads[1]), f"+{threads[1] - threads[0]}"),
    ]
    section.notes.append(
        f"Each open dashboard holds a session and the live stream its page holds (half the "
        f"Overview's pulse, half the Activity page's events: under a flood the newest 100 of each "
        f"batch), and reloads the Overview as the page does, on one keep-alive connection; "
        f"{f.received:,} events reached them while the work ran, and their "
        f"process (on the same machine, like a browser) used {f.client_cpu:.1f} s of CPU. "
        "Ratios are medians of per-round ratios (open / closed, each round timed back to back)."
    )
    p99 = percentile(f.latency_open, 99)
    targets = [
        Target(
            f"exec with {n} dashboards open",
            "within 5% of none open",
            f"{f.exec_ratio():.3f}x",
            f.exec_ratio() <= 1.05,
        ),
        Target(
            f"exec's CPU in all with {n} dashboards open",
            "within 5% of none open",
            f"{f.cpu_ratio('exec_total'):.3f}x",
            f.cpu_ratio("exec_total") <= 1.05,
        ),
        Target(
            f"issuance with {n} dashboards open",
            "within 5% of none open",
            f"{f.issue_ratio():.3f}x",
            f.issue_ratio() >= 0.95,
        ),
        Target("new event on an open dashboard", "<= 1 s (p99)", ms(p99), p99 <= 1.0),
        Target(
            f"{n} open dashboards",
            "no thread each",
            f"{threads[1] - threads[0]} threads added",
            threads[1] - threads[0] <= 1,
        ),
    ]
    return section, targets


def main() -> None:
    """Only figure 9, with its targets: ``python bench/dashboard_bench.py [--quick]``."""
    import argparse
    import os

    from common import FULL, QUICK, fresh_home

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--quick", action="store_true")
    plan = QUICK if parser.parse_args().quick else FULL
    with fresh_home() as home:
        daemon = Daemon(home)
        daemon.start()
        os.environ["KONTEXT_HOME"] = str(home)
        try:
            daemon.create_agent(AGENT)
            section, targets = bench_dashboard(daemon, plan)
        finally:
            daemon.stop()
    table = Section("Targets (issue 15)", ("target", "goal", "measured", "verdict"))
    table.rows += [t.row() for t in targets]
    print("\n".join(s.markdown() for s in [table, section]))


if __name__ == "__main__":
    main()
