"""kontext benchmarks: every figure next to a baseline measured in the same run.

::

    .venv/bin/python bench/run.py            # full run (~3 minutes); writes bench/RESULTS.md
    .venv/bin/python bench/run.py --quick    # smoke run for CI (~20 s); prints, writes nothing

It starts a real kontextd in a throw-away KONTEXT_HOME under /tmp (a Unix socket
path must fit in 108 bytes) and measures, with the kontext and python of the
interpreter running this script:

1. exec overhead: ``kontext exec --agent a -- true`` against ``true`` and
   ``python3 -c pass`` (daemon warm), interleaved run by run.
2. Issuance: credentials/s and p50/p99 latency at 1, 8, 32 and 128 concurrent
   clients; a client connects to the Unix socket, POSTs /v1/credentials and
   closes the connection (which ends the lease, so the daemon revokes it). The
   clients run in several processes so the benchmark's own GIL is not the limit.
3. Introspection and /jwks.json requests/s on the loopback port, with
   keep-alive connections (http.client), against a trivial HTTP server built on
   the same standard-library server class, as the baseline.
4. Revocation latency: ``kontext revoke agent:X`` returning -> introspection
   says inactive; a SIGKILLed ``kontext exec`` wrapper -> inactive.
5. Daemon cold start (process start -> control socket answering), idle RSS and
   RSS after the load above (VmRSS from /proc/PID/status).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import http.server
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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
SCOPES = ("github:pulls:read", "github:pulls:write")


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
        """Approve the agent's scopes once, before timing: ``kontext consent grant`` with
        the tests' browser stand-in (tests/browser_approve.py) clicking Approve."""
        browser = self.home / "browser.sh"
        script = HERE.parent / "tests" / "browser_approve.py"
        browser.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
        browser.chmod(0o700)
        scopes = [arg for scope in SCOPES for arg in ("--scope", scope)]
        proc = subprocess.run(
            [KONTEXT, "consent", "grant", f"agent:{name}", "--for", "1d", *scopes],
            env={**self.env, "BROWSER": str(browser)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"consent grant for {name}: {proc.stderr.strip()}")


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


# ---------------------------------------------------------------------------
# 1. exec overhead
# ---------------------------------------------------------------------------


def timed_run(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{argv}: exit {proc.returncode}: {proc.stderr.decode()[-300:]}")
    return elapsed


@contextmanager
def regular_install() -> Iterator[Path | None]:
    """A throwaway venv with kontext installed as users install it (a wheel, not
    editable: no import hook), or None if it cannot be built here."""
    with tempfile.TemporaryDirectory(prefix="kb-venv-") as where:
        venv = Path(where)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            # The exec path imports no third-party module, so no dependencies are needed.
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(HERE.parent)],
                check=True,
                timeout=600,
                capture_output=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"no regular install for the exec benchmark: {exc}", file=sys.stderr)
            yield None
            return
        yield venv / "bin"


EXEC_ARGS = ("exec", "--agent", AGENT, "--", TRUE)


def bench_exec(daemon: Daemon, plan: Plan) -> tuple[Section, dict[str, list[float]]]:
    commands = {
        "`true`": [TRUE],
        "`python3 -c pass`": [sys.executable, "-c", "pass"],
        "`kontext exec --agent a -- true`": [KONTEXT, *EXEC_ARGS],
    }
    baseline_of = {name: "`python3 -c pass`" for name in commands}
    with regular_install() if plan.regular_install else _nothing() as bin_dir:
        if bin_dir is not None:
            commands["`python3 -c pass`, regular install's venv"] = [
                str(bin_dir / "python"),
                "-c",
                "pass",
            ]
            commands["`kontext exec --agent a -- true`, regular install"] = [
                str(bin_dir / "kontext"),
                *EXEC_ARGS,
            ]
            for name in list(commands)[-2:]:
                baseline_of[name] = "`python3 -c pass`, regular install's venv"
        times = _time_interleaved(commands, daemon.env, plan.exec_runs)
    section = Section(
        "1. exec overhead (daemon warm)",
        ("command", "runs", "median", "p95", "median / python3 -c pass (same venv)"),
    )
    for name, values in times.items():
        median = statistics.median(values)
        section.rows.append(
            (
                name,
                str(len(values)),
                ms(median),
                ms(percentile(values, 95)),
                f"{median / statistics.median(times[baseline_of[name]]):.2f}x",
            )
        )
    section.notes.append(
        "Each run is a fresh process started with subprocess.run from this script; each "
        "`kontext` is compared with `python3 -c pass` run by its own venv's interpreter. "
        "The first venv is the one running this script (an editable install in CI and "
        "development, whose import hook slows every start, the floor included); the "
        "second is built for this run from a wheel, as pipx or pip install it."
    )
    return section, times


def _time_interleaved(
    commands: dict[str, list[str]], env: dict[str, str], runs: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # warm the page cache and the daemon
        timed_run(argv, env)
    for _ in range(runs):
        for name, argv in commands.items():  # interleaved: drift hits all alike
            times[name].append(timed_run(argv, env))
    return times


# ---------------------------------------------------------------------------
# 2. issuance over the Unix socket
# ---------------------------------------------------------------------------


def _issue_thread(path: str, body: bytes, deadline: float, out: list[float]) -> None:
    request = (
        b"POST /v1/credentials HTTP/1.1\r\nHost: kontextd\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    while True:
        began = time.perf_counter()
        if began >= deadline:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            sock.sendall(request)
            status = _read_response(sock)
        finally:
            sock.close()  # ends the lease: the daemon revokes the credential
        if status != 201:
            raise RuntimeError(f"issuance answered {status}")
        out.append(time.perf_counter() - began)


def _read_response(sock: socket.socket) -> int:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("daemon closed the connection")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(x.split(":", 1)[1]) for x in lines if x.lower().startswith("content-length:"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("daemon closed the connection mid-response")
        rest += chunk
    json.loads(rest[:length])  # a client decodes what it gets
    return int(lines[0].split(" ", 2)[1])


def _issue_worker(args: tuple[str, str, int, float, float]) -> list[float]:
    """One process's share of the clients; returns every request's latency."""
    path, agent, threads, start_at, seconds = args
    body = json.dumps({"agent": agent}).encode()
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + seconds
    results: list[list[float]] = [[] for _ in range(threads)]
    pool = [
        threading.Thread(target=_issue_thread, args=(path, body, deadline, out)) for out in results
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return [x for out in results for x in out]


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


OIDC_DIR = HERE / "oidc"
OIDC_CLIENT = ("bench", "bench-secret-not-a-real-one-0123456789")  # as in oidc/server.mjs


@dataclass
class ThirdParty:
    """npm oidc-provider, serving the client_credentials grant on loopback."""

    port: int
    pid: int
    version: str


@contextmanager
def third_party_server() -> Iterator[ThirdParty | None]:
    """Install (npm ci, into a temp dir) and start oidc-provider; None without node/npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="kb-oidc-") as workdir:
        for name in ("package.json", "package-lock.json", "server.mjs"):
            shutil.copy(OIDC_DIR / name, workdir)
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=workdir, check=True, timeout=300
        )
        meta = json.loads((Path(workdir) / "node_modules/oidc-provider/package.json").read_text())
        proc = subprocess.Popen(
            [node, "server.mjs"], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            yield ThirdParty(
                port, proc.pid, f"oidc-provider {meta['version']}, node {_node_version(node)}"
            )
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _node_version(node: str) -> str:
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()


def _oauth_thread(port: int, deadline: float, out: list[float]) -> None:
    import base64

    auth = base64.b64encode(":".join(OIDC_CLIENT).encode()).decode()
    body = "grant_type=client_credentials&scope=pulls%3Aread"
    headers = {
        "Authorization": f"Basic {auth}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    while (began := time.perf_counter()) < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:  # a connection per token, as a kontext exec has one per credential
            conn.request("POST", "/token", body, headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
        finally:
            conn.close()
        if response.status != 200 or "access_token" not in answer:
            raise RuntimeError(f"/token answered {response.status}: {answer}")
        out.append(time.perf_counter() - began)


def _oauth_worker(args: tuple[int, str, int, float, float]) -> list[float]:
    port, _, threads, start_at, seconds = args
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + seconds
    results: list[list[float]] = [[] for _ in range(threads)]
    pool = [threading.Thread(target=_oauth_thread, args=(port, deadline, out)) for out in results]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return [x for out in results for x in out]


Issuance = dict[tuple[str, int], tuple[float, list[float]]]


def bench_issuance(daemon: Daemon, plan: Plan) -> tuple[Section, Issuance]:
    """kontext at each concurrency level, then the third-party server at the same level."""
    results: Issuance = {}
    section = Section(
        "2. Credential issuance (a connection per credential)",
        (
            "server",
            "concurrent clients",
            "credentials",
            "credentials/s",
            "p50",
            "p99",
            "server CPU",
        ),
    )
    with third_party_server() if plan.third_party else _nothing() as other:
        servers: list[tuple[str, int, Callable[[Any], list[float]], tuple[Any, ...]]] = [
            ("kontextd (Unix socket)", daemon.pid, _issue_worker, (daemon.socket, AGENT))
        ]
        if other is not None:
            servers.append(
                ("oidc-provider /token (loopback TCP)", other.pid, _oauth_worker, (other.port, ""))
            )
        for clients in plan.issue_levels:
            for name, pid, worker, extra in servers:
                cpu_before = _cpu_seconds(pid)
                rate, latencies = run_load(worker, clients, plan.issue_seconds, extra)
                cpu = (_cpu_seconds(pid) - cpu_before) / plan.issue_seconds
                results[(name, clients)] = (rate, latencies)
                section.rows.append(
                    (
                        name,
                        str(clients),
                        str(len(latencies)),
                        f"{rate:,.0f}",
                        ms(percentile(latencies, 50)),
                        ms(percentile(latencies, 99)),
                        f"{cpu * 100:.0f}% of a core",
                    )
                )
                _wait_for_leases_to_end(daemon)
        section.notes.append(
            "kontextd: connect to the control socket, POST /v1/credentials, close; each "
            "credential is minted (ES256), stored and audited, then revoked and audited when "
            "its connection closes. "
            + (
                f"Baseline: {other.version} (bench/oidc/server.mjs), client_credentials grant "
                "with basic auth, an ES256 at+jwt for one resource, a new TCP connection per "
                "token; it keeps nothing on disk and writes no audit record."
                if other is not None
                else "Third-party baseline skipped (quick run, or no node/npm)."
            )
            + " Clients are threads spread over 4 processes on the same 2 cores."
        )
    return section, results


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_leases_to_end(daemon: Daemon, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while daemon.call("GET", "/v1/status")["live_credentials"] and time.monotonic() < deadline:
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# 3. introspection and JWKS on the loopback port
# ---------------------------------------------------------------------------


def _http_worker(args: tuple[int, str, int, float, float, str]) -> list[float]:
    port, token, threads, start_at, seconds, what = args
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + seconds
    results: list[list[float]] = [[] for _ in range(threads)]

    def client(out: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while (began := time.perf_counter()) < deadline:
                if what == "introspect":
                    if not introspect(conn, token).get("active"):
                        raise RuntimeError("token inactive during the benchmark")
                else:
                    conn.request("GET", "/jwks.json")
                    response = conn.getresponse()
                    response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{what} answered {response.status}")
                out.append(time.perf_counter() - began)
        finally:
            conn.close()

    pool = [threading.Thread(target=client, args=(out,)) for out in results]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return [x for out in results for x in out]


class _Baseline(http.server.BaseHTTPRequestHandler):
    """The floor: the same standard-library server answering a fixed JSON body."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY: headers and body leave at once
    body = b'{"active":true}'

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def baseline_server() -> Iterator[int]:
    """A ThreadingHTTPServer in a separate process, like the daemon's loopback server."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: serve until killed
        os.close(read)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Baseline)
        os.write(write, str(server.server_address[1]).encode())
        os.close(write)
        server.serve_forever()
        os._exit(0)
    os.close(write)
    port = int(os.read(read, 32))
    os.close(read)
    try:
        yield port
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def bench_http(daemon: Daemon, plan: Plan) -> tuple[Section, dict[tuple[str, int], float]]:
    rates: dict[tuple[str, int], float] = {}
    section = Section(
        "3. Loopback HTTP: introspection and JWKS (keep-alive clients)",
        ("endpoint", "clients", "requests", "requests/s", "p50", "p99", "vs. baseline"),
    )
    lease = daemon.connect()  # holds the credential (and so the token) live
    token = lease.call("POST", "/v1/credentials", {"agent": AGENT})["token"]
    try:
        with baseline_server() as base_port:
            for clients in plan.http_clients:
                base, _ = run_load(
                    _http_worker, clients, plan.http_seconds, (base_port, token, "baseline")
                )
                rates[("baseline", clients)] = base
                section.rows.append(
                    (
                        "baseline: fixed JSON from the same server class",
                        str(clients),
                        "-",
                        f"{base:,.0f}",
                        "-",
                        "-",
                        "1.00x",
                    )
                )
                for what in ("introspect", "jwks"):
                    rate, lat = run_load(
                        _http_worker, clients, plan.http_seconds, (daemon.port, token, what)
                    )
                    rates[(what, clients)] = rate
                    section.rows.append(
                        (
                            "POST /introspect" if what == "introspect" else "GET /jwks.json",
                            str(clients),
                            str(len(lat)),
                            f"{rate:,.0f}",
                            ms(percentile(lat, 50)),
                            ms(percentile(lat, 99)),
                            f"{rate / base:.2f}x",
                        )
                    )
    finally:
        lease.close()
    section.notes.append(
        "Introspection verifies the ES256 signature and looks the jti up in the store; the "
        "baseline is http.server.ThreadingHTTPServer returning a constant, in its own process."
    )
    return section, rates


# ---------------------------------------------------------------------------
# 4. revocation latency
# ---------------------------------------------------------------------------


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
        began = time.perf_counter()
        daemon.kontext("revoke", f"agent:{victim}")
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
            "`kontext revoke agent:X` returns",
            "introspection says inactive",
            str(len(after_revoke)),
            ms(statistics.median(after_revoke)),
            ms(percentile(after_revoke, 95)),
            f"the revoke command itself: median {ms(statistics.median(cli_times))}",
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


# ---------------------------------------------------------------------------
# 5. cold start and memory
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# 6. audit trail at 1,000,000 events
# ---------------------------------------------------------------------------


def timed_on_tty(argv: list[str], env: dict[str, str]) -> float:
    """Like ``timed_run``, with stdout a pseudo-terminal (as for a person at a shell)."""
    import pty

    master, slave = pty.openpty()
    drained = threading.Thread(target=_drain, args=(master,), daemon=True)
    drained.start()
    try:
        began = time.perf_counter()
        proc = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE
        )
        elapsed = time.perf_counter() - began
    finally:
        os.close(slave)
        drained.join(timeout=5)
        os.close(master)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv}: exit {proc.returncode}: {proc.stderr.decode()[-300:]}")
    return elapsed


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass


@dataclass
class AuditFigures:
    verify: list[float]
    tail_pipe: list[float]
    tail_tty: list[float]

    @property
    def tail(self) -> float:
        """The slower median of the two ways a user runs ``audit tail``."""
        return max(statistics.median(self.tail_pipe), statistics.median(self.tail_tty))


def bench_audit(plan: Plan) -> tuple[Section, AuditFigures]:
    """Fill a store through ``append_event`` (bench/audit_bench.py), then time the CLI."""
    import audit_bench

    with fresh_home() as home:
        saved = os.environ.get("KONTEXT_HOME")
        os.environ["KONTEXT_HOME"] = str(home)
        try:
            rate = audit_bench.fill(plan.audit_events, 10_000, 1000)
        finally:
            if saved is None:
                os.environ.pop("KONTEXT_HOME", None)
            else:
                os.environ["KONTEXT_HOME"] = saved
        daemon = Daemon(home)
        daemon.start()
        tail = [KONTEXT, "audit", "tail", "-n", "100"]
        times: dict[str, list[float]] = {"pipe": [], "tty": [], "python": [], "verify": []}
        try:
            for _ in range(plan.audit_runs):  # interleaved: drift hits all alike
                times["python"].append(timed_run([sys.executable, "-c", "pass"], daemon.env))
                times["pipe"].append(timed_run(tail, daemon.env))
                times["tty"].append(timed_on_tty(tail, daemon.env))
            for _ in range(plan.audit_runs):
                times["verify"].append(timed_run([KONTEXT, "audit", "verify"], daemon.env))
        finally:
            daemon.stop()
    section = Section(
        f"6. Audit trail at {plan.audit_events:,} events",
        ("measure", "runs", "median", "p95", "baseline"),
    )
    python = statistics.median(times["python"])
    section.rows.append(
        (
            "append (the store's append_event, transactions of 10,000)",
            "1",
            f"{rate:,.0f} events/s",
            "-",
            "-",
        )
    )
    for name, key in (
        ("`kontext audit tail -n 100`, stdout a pipe", "pipe"),
        ("`kontext audit tail -n 100`, stdout a terminal (pty)", "tty"),
    ):
        median = statistics.median(times[key])
        section.rows.append(
            (
                name,
                str(len(times[key])),
                ms(median),
                ms(percentile(times[key], 95)),
                f"{median / python:.2f}x python3 -c pass ({ms(python)})",
            )
        )
    section.rows.append(
        (
            "`kontext audit verify`",
            str(len(times["verify"])),
            f"{statistics.median(times['verify']):.2f} s",
            f"{percentile(times['verify'], 95):.2f} s",
            f"{plan.audit_events / statistics.median(times['verify']):,.0f} events/s",
        )
    )
    section.notes.append(
        "Events are appended through the daemon's own Store.append_event (canonical JSON, "
        "SHA-256 link, INSERT) with a signed checkpoint every 1,000, then a daemon is started "
        "on that home and the CLI is timed as a whole process."
    )
    return section, AuditFigures(times["verify"], times["pipe"], times["tty"])


def bench_cold_start(plan: Plan) -> tuple[list[float], float, list[float]]:
    """(first starts in a new home, their idle RSS, restarts of an existing home)."""
    first: list[float] = []
    again: list[float] = []
    rss: list[float] = []
    for _ in range(plan.cold_starts):
        with fresh_home() as home:
            daemon = Daemon(home)
            first.append(daemon.start())
            time.sleep(0.3)
            rss.append(daemon.rss_mb())
            daemon.stop()
            again.append(daemon.start())
            daemon.stop()
    return first, statistics.median(rss), again


def python_floor() -> float:
    """Median time for the interpreter to start and import nothing (for scale)."""
    runs = [timed_run([sys.executable, "-c", "pass"], dict(os.environ)) for _ in range(15)]
    return statistics.median(runs)


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def machine() -> list[str]:
    model = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    from kontext import __version__

    return [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {model}, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({sys.executable})",
        "- load average when the run ended: {:.2f} {:.2f} {:.2f} (other work on the machine "
        "skews every figure; compare ratios within one run)".format(*os.getloadavg()),
        f"- kontext {__version__}" + (f", commit {commit}" if commit else ""),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer runs, no RESULTS.md")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    began = time.perf_counter()
    sections: list[Section] = []
    targets: list[Target] = []

    print("cold start ...", file=sys.stderr)
    first, idle_rss, again = bench_cold_start(plan)
    floor = python_floor()
    with fresh_home() as home:
        daemon = Daemon(home)
        daemon.start()
        os.environ["KONTEXT_HOME"] = str(home)
        try:
            daemon.create_agent(AGENT)
            warm_rss = daemon.rss_mb()
            print("exec ...", file=sys.stderr)
            exec_section, exec_times = bench_exec(daemon, plan)
            print("issuance ...", file=sys.stderr)
            issue_section, issued = bench_issuance(daemon, plan)
            print("loopback http ...", file=sys.stderr)
            http_section, _ = bench_http(daemon, plan)
            print("revocation ...", file=sys.stderr)
            revoke_section, after_revoke, after_kill = bench_revoke(daemon, plan)
            loaded_rss = daemon.rss_mb()
        finally:
            daemon.stop()
    print("audit ...", file=sys.stderr)
    audit_section, audit = bench_audit(plan)
    sections += [exec_section, issue_section, http_section, revoke_section]
    start_section = Section(
        "5. Daemon start and memory",
        ("figure", "runs", "median", "p95", "baseline"),
    )
    start_section.rows += [
        (
            "cold start, new KONTEXT_HOME (creates key and store)",
            str(len(first)),
            ms(statistics.median(first)),
            ms(percentile(first, 95)),
            f"python3 -c pass: {ms(floor)}",
        ),
        (
            "cold start, existing KONTEXT_HOME",
            str(len(again)),
            ms(statistics.median(again)),
            ms(percentile(again, 95)),
            f"python3 -c pass: {ms(floor)}",
        ),
        ("idle RSS after start", str(len(first)), f"{idle_rss:.1f} MB", "-", "-"),
        ("RSS with agents, before load", "1", f"{warm_rss:.1f} MB", "-", "-"),
        ("RSS after the load above", "1", f"{loaded_rss:.1f} MB", "-", "-"),
    ]
    sections += [start_section, audit_section]

    exec_median = statistics.median(exec_times["`kontext exec --agent a -- true`"])
    python_median = statistics.median(exec_times["`python3 -c pass`"])
    regular = exec_times.get("`kontext exec --agent a -- true`, regular install")
    regular_python = exec_times.get("`python3 -c pass`, regular install's venv")
    rate32, lat32 = issued.get(("kontextd (Unix socket)", 32), (0.0, [0.0]))
    other32 = issued.get(("oidc-provider /token (loopback TCP)", 32))
    targets += [
        Target(
            "exec overhead (this venv)",
            "median <= 2x `python3 -c pass`",
            f"{exec_median / python_median:.2f}x",
            exec_median <= 2 * python_median,
        ),
        Target(
            "exec overhead (regular install, from a wheel)",
            "median <= 2x `python3 -c pass`",
            f"{statistics.median(regular) / statistics.median(regular_python):.2f}x"
            if regular and regular_python
            else "-",
            statistics.median(regular) <= 2 * statistics.median(regular_python)
            if regular and regular_python
            else None,
        ),
        Target(
            "issuance at 32 clients", ">= 2,000 credentials/s", f"{rate32:,.0f}/s", rate32 >= 2000
        ),
        Target(
            "issuance p99 at 32 clients",
            "<= 25 ms",
            ms(percentile(lat32, 99)),
            percentile(lat32, 99) <= 0.025,
        ),
        Target(
            "issuance vs. a third-party OAuth server",
            "ahead in the same run (32 clients)",
            f"{rate32 / other32[0]:.2f}x oidc-provider ({other32[0]:,.0f}/s)" if other32 else "-",
            rate32 > other32[0] if other32 else None,
        ),
        Target(
            "revoke -> inactive",
            "<= 10 ms after revoke returns",
            ms(max(after_revoke)) + " (worst)",
            max(after_revoke) <= 0.010,
        ),
        Target(
            "SIGKILLed wrapper -> inactive",
            "<= 1 s",
            ms(max(after_kill)) + " (worst)",
            max(after_kill) <= 1.0,
        ),
        Target(
            f"audit verify at {plan.audit_events:,} events",
            "<= 10 s",
            f"{statistics.median(audit.verify):.2f} s (median)",
            statistics.median(audit.verify) <= 10,
        ),
        Target(
            f"audit tail -n 100 at {plan.audit_events:,} events",
            "<= 100 ms",
            ms(audit.tail) + " (median, the slower of pipe and terminal)",
            audit.tail <= 0.1,
        ),
        Target("daemon idle RSS", "<= 60 MB", f"{idle_rss:.1f} MB", idle_rss <= 60),
    ]
    target_section = Section("Targets (issue 6)", ("target", "goal", "measured", "verdict"))
    target_section.rows += [t.row() for t in targets]

    report = "\n".join(s.markdown() for s in [target_section, *sections])
    print(report)
    print(f"(took {time.perf_counter() - began:.0f} s)", file=sys.stderr)
    if not args.quick:
        write_results(args.out, report)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def write_results(path: Path, report: str) -> None:
    """RESULTS.md: machine, figures, targets, and the hand-written findings (FINDINGS.md)."""
    findings = HERE / "FINDINGS.md"
    parts = [
        "# kontext benchmark results",
        "",
        "Generated by `bench/run.py` (do not edit; findings live in `bench/FINDINGS.md`).",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Results",
        "",
        report,
    ]
    if findings.exists():
        parts += ["## Findings", "", findings.read_text().strip(), ""]
    # The slower, separate benchmarks keep their own last results; fold them in so
    # RESULTS.md is the one place to read every figure.
    # (The audit trail is measured by this script now; bench/AUDIT_RESULTS.md is the
    # standalone audit_bench.py's own record.)
    for name, script in (("GATEWAY_RESULTS.md", "gateway_bench.py"),):
        extra = HERE / name
        if extra.exists():
            body = extra.read_text().strip().replace("\n# ", "\n### ").removeprefix("# ")
            parts += [f"## {body}", "", f"(From `bench/{name}`, written by `bench/{script}`.)", ""]
    path.write_text("\n".join(parts))


if __name__ == "__main__":
    sys.exit(main())
