"""2. Issuance over the Unix socket, against npm oidc-provider's /token in the same run."""

from __future__ import annotations

import http.client
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    AGENT,
    HERE,
    Daemon,
    Plan,
    Section,
    cpu_seconds,
    ms,
    nothing,
    percentile,
    run_load,
    wait_for_leases_to_end,
)


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
    with third_party_server() if plan.third_party else nothing() as other:
        servers: list[tuple[str, int, Callable[[Any], list[float]], tuple[Any, ...]]] = [
            ("kontextd (Unix socket)", daemon.pid, _issue_worker, (daemon.socket, AGENT))
        ]
        if other is not None:
            servers.append(
                ("oidc-provider /token (loopback TCP)", other.pid, _oauth_worker, (other.port, ""))
            )
        for clients in plan.issue_levels:
            for name, pid, worker, extra in servers:
                cpu_before = cpu_seconds(pid)
                rate, latencies = run_load(worker, clients, plan.issue_seconds, extra)
                cpu = (cpu_seconds(pid) - cpu_before) / plan.issue_seconds
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
                wait_for_leases_to_end(daemon)
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
