"""Gateway benchmark: added latency per call and throughput, direct vs through kontextd.

Standalone (not a timed test)::

    python bench/gateway_bench.py [--calls 2000] [--clients 8] [--seconds 5] [--mib 64]

The fake GitHub from ``tests/upstream`` runs in a process of its own; a real
daemon in a temp KONTEXT_HOME has it as GitHub's base URL and holds its API key.
The same httpx keep-alive client code calls ``GET /repos/acme/backend/pulls/42``
directly and through ``/gw/github/...`` with a kontext credential (held open on
the control socket, as ``kontext exec`` holds it). Each gateway call is verified
(ES256 signature, revocation in SQLite), matched to a route rule, forwarded and
audited (one hash-chained SQLite append). Prints a Markdown table for
bench/GATEWAY_RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from kontext.common.paths import resolve  # noqa: E402
from kontext_cli import client  # noqa: E402
from tests.upstream.fake_github import API_KEY, big_body  # noqa: E402

KONTEXT = str(Path(sys.executable).parent / "kontext")
PR = "/repos/acme/backend/pulls/42"


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.upstream.fake_github"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def start_daemon(home: str, upstream: str) -> str:
    os.environ["KONTEXT_HOME"] = home
    os.makedirs(f"{home}/config", mode=0o700)
    Path(f"{home}/config/config.toml").write_text(
        f'[integrations.github]\nbase_url = "{upstream}"\n'
    )
    run = lambda *a, **kw: subprocess.run([KONTEXT, *a], check=True, capture_output=True, **kw)  # noqa: E731
    run("daemon", "start")
    run("integration", "connect", "github", "--secret-stdin", input=API_KEY.encode())
    run(
        "agent",
        "create",
        "bench",
        "--allow",
        "github:pulls:read",
        "--allow",
        "github:contents:read",
    )
    port = Path(f"{home}/data/http-port").read_text().strip()
    approve(home)
    return f"http://127.0.0.1:{port}"


def approve(home: str) -> None:
    """Where user consent is enforced, approve the bench agent's scopes on the consent
    page as the test harness's browser stand-in does (once, before timing)."""
    try:
        from tests.conftest import Kontext, approve_over_http
    except ImportError:  # a tree without the consent layer
        return
    approve_over_http(Kontext(Path(home)), "bench", ["github:pulls:read", "github:contents:read"])


def latencies(base: str, headers: dict[str, str], calls: int) -> list[float]:
    """Sequential calls on one kept-alive connection; milliseconds each."""
    out = []
    with httpx.Client(base_url=base, headers=headers) as http:
        for _ in range(50):  # warm-up
            http.get(PR)
        for _ in range(calls):
            t = time.perf_counter()
            answer = http.get(PR)
            out.append((time.perf_counter() - t) * 1000)
            assert answer.status_code == 200, answer.text
    return out


def throughput(base: str, headers: dict[str, str], clients: int, seconds: float) -> float:
    """Calls per second with ``clients`` threads, each on its own kept-alive connection."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=base, headers=headers) as http:
            while time.perf_counter() < stop:
                assert http.get(PR).status_code == 200
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def stream_rate(base: str, headers: dict[str, str], mib: int) -> float:
    """MiB/s for one large streamed (chunked) download, checked byte for byte."""
    size = mib * 1024 * 1024
    digest = hashlib.sha256()
    t = time.perf_counter()
    with (
        httpx.Client(base_url=base, headers=headers, timeout=120) as http,
        http.stream("GET", f"/repos/acme/backend/contents/big?size={size}") as answer,
    ):
        for piece in answer.iter_raw():
            digest.update(piece)
    elapsed = time.perf_counter() - t
    assert digest.hexdigest() == hashlib.sha256(big_body(size)).hexdigest()
    return mib / elapsed


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="kxgw-", dir="/tmp")
    upstream_proc, upstream = start_upstream()
    try:
        base = start_daemon(home, upstream)
        with client.connect(resolve()) as lease:  # the credential lives while this is open
            token = lease.call(
                "POST", "/v1/credentials", {"agent": "bench", "target": "acme/backend"}
            )["token"]
            report(args, upstream, f"{base}/gw/github", token)
    finally:
        subprocess.run([KONTEXT, "daemon", "stop"], capture_output=True)
        upstream_proc.stdin.close()  # type: ignore[union-attr]
        upstream_proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def report(args: argparse.Namespace, direct: str, gateway: str, token: str) -> None:
    direct_h = {"Authorization": f"Bearer {API_KEY}"}
    gateway_h = {"Authorization": f"Bearer {token}"}
    d_lat = latencies(direct, direct_h, args.calls)
    g_lat = latencies(gateway, gateway_h, args.calls)
    d_rps = throughput(direct, direct_h, args.clients, args.seconds)
    g_rps = throughput(gateway, gateway_h, args.clients, args.seconds)
    d_mib = stream_rate(direct, direct_h, args.mib)
    g_mib = stream_rate(gateway, gateway_h, args.mib)
    rows = [
        (
            "p50 latency, sequential keep-alive (ms)",
            statistics.median(d_lat),
            statistics.median(g_lat),
        ),
        ("p99 latency (ms)", pct(d_lat, 0.99), pct(g_lat, 0.99)),
        (f"throughput, {args.clients} clients (calls/s)", d_rps, g_rps),
        (f"streamed {args.mib} MiB download (MiB/s)", d_mib, g_mib),
    ]
    print(f"load average before: {os.getloadavg()[0]:.2f}; calls={args.calls}")
    print("| measure | direct | via gateway |\n| --- | --- | --- |")
    for name, d, g in rows:
        print(f"| {name} | {d:,.2f} | {g:,.2f} |")
    added = statistics.median(g_lat) - statistics.median(d_lat)
    print(f"\nadded latency per call (p50): {added:.2f} ms")


if __name__ == "__main__":
    main()
