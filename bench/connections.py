"""8. Many connections without a thread each: 2,000 idle keep-alive clients and 20
Server-Sent-Event streams, as daemon memory (VmRSS) and thread count.

The idle clients each send one request and keep their connection open. The SSE
streams are served by the same stack (``kontextd.api.web``) in a process of its
own — ``sse_server.py``, a real ``HttpServer`` over a real ``Store`` with one SSE
route — since the daemon has no public stream route yet (the dashboard and
``audit tail -f`` will add theirs); events are appended while they listen.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time

from common import HERE, Daemon, Section, proc_status

IDLE = 2000
STREAMS = 20


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def bench_idle(daemon: Daemon, count: int = IDLE) -> tuple[Section, float, int]:
    """(section, MB added, threads added) for ``count`` idle keep-alive connections."""
    _raise_nofile(count + 500)
    pid = daemon.pid
    time.sleep(0.5)
    rss0, threads0 = proc_status(pid, "VmRSS") / 1024, proc_status(pid, "Threads")
    request = b"GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % daemon.port
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=30)
            sock.sendall(request)
            socks.append(sock)
        served = sum(s.recv(65536).startswith(b"HTTP/1.1 200") for s in socks)
        rss1, threads1 = proc_status(pid, "VmRSS") / 1024, proc_status(pid, "Threads")
    finally:
        for sock in socks:
            sock.close()
    section = Section(
        "8. Connections without a thread each",
        ("what", "count", "served", "daemon RSS added", "threads added", "target"),
    )
    section.rows.append(
        (
            "idle keep-alive loopback connections",
            str(count),
            str(served),
            f"{rss1 - rss0:.1f} MB",
            str(threads1 - threads0),
            "< 50 MB, no thread each",
        )
    )
    return section, rss1 - rss0, threads1 - threads0


def bench_sse(section: Section, streams: int = STREAMS) -> tuple[float, int]:
    """Add the SSE row to ``section``; (MB added, threads added)."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "sse_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        port = int(proc.stdout.readline())
        time.sleep(0.3)
        rss0, threads0 = proc_status(proc.pid, "VmRSS") / 1024, proc_status(proc.pid, "Threads")
        socks = []
        for _ in range(streams):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
            socks.append(sock)
        for sock in socks:  # each stream is open (its first comment came) before appending
            _read_until(sock, b": kontextd event stream")
        proc.stdin.write("100\n")
        proc.stdin.flush()
        got = [_read_events(sock, 100) for sock in socks]
        rss1, threads1 = proc_status(proc.pid, "VmRSS") / 1024, proc_status(proc.pid, "Threads")
        for sock in socks:
            sock.close()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
    section.rows.append(
        (
            "Server-Sent-Event streams (100 audit events each)",
            str(streams),
            str(sum(n == 100 for n in got)),
            f"{rss1 - rss0:.1f} MB",
            str(threads1 - threads0),
            "< 50 MB, no thread each",
        )
    )
    return rss1 - rss0, threads1 - threads0


def _read_until(sock: socket.socket, marker: bytes) -> None:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("the event stream closed")
        data += chunk


def _read_events(sock: socket.socket, want: int) -> int:
    data = b""
    while data.count(b"\nevent: audit\n") < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.count(b"\nevent: audit\n")
