"""3. Introspection and JWKS on the loopback port (http.client keep-alive clients)."""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from common import AGENT, Daemon, Plan, Section, introspect, ms, percentile, run_load


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
