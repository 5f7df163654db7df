"""Connection floods: 1,000 idle control connections and 600 loopback ones,
slow-loris clients and oversized requests on both of the daemon's sockets do not
stop a new ``exec`` being served promptly — with the daemon started under a
desktop's usual soft limit of 1,024 open files (kontextd lifts it towards the
hard limit). Loopback connections cost no thread; another OS user's are capped
per uid (tests/security/test_loopback_attacks.py).
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Kontext, api_new_agent, wait_until

IDLE = 1000  # on the control socket
LOOPBACK_FLOOD = 600  # on the loopback port, with no thread each
SLOW = 50
PROMPT = 15.0  # seconds; an exec takes well under one, this allows for a loaded CI box
DESKTOP_NOFILE = 1024


@pytest.fixture
def flooded_kx(fresh_kx: Kontext) -> Iterator[Kontext]:
    """A daemon started with a 1,024 soft limit on open files (the CLI passes its own on)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * (IDLE + LOOPBACK_FLOOD) + 4 * SLOW + 200
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"this test opens {need} sockets; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESKTOP_NOFILE, hard))
    try:
        fresh_kx.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield fresh_kx
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _idle_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    for _ in range(100):  # a full listen backlog is EAGAIN on a Unix socket: wait, retry
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            time.sleep(0.05)
    raise AssertionError("the control socket's backlog never drained")


def _slow_loris(sock: socket.socket, stop: threading.Event, head: bytes) -> None:
    """Send a request head one byte a second, never finishing."""
    with contextlib.suppress(OSError):
        for byte in head:
            if stop.wait(1.0):
                return
            sock.sendall(bytes([byte]))


def _jwks_ok(k: Kontext) -> bool:
    with contextlib.suppress(OSError, httpx.HTTPError), k.http() as http:
        return http.get("/jwks.json").status_code == 200
    return False


def _exec_takes(k: Kontext, agent: str) -> float:
    started = time.monotonic()
    proc = k.run("exec", "--agent", agent, "--", sys.executable, "-c", "pass", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - started


def test_idle_slow_and_oversized_clients_do_not_starve_a_new_exec(flooded_kx: Kontext) -> None:
    k = flooded_kx
    agent = api_new_agent(k, "github:pulls:read", prefix="flood")
    socks: list[socket.socket] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        # Many on the loopback port too: an event loop holds them without a thread each.
        for n in range(IDLE + LOOPBACK_FLOOD):
            if n < IDLE:
                socks.append(_idle_unix(str(k.socket)))
            else:
                socks.append(socket.create_connection(("127.0.0.1", k.port), timeout=10))
        for n in range(SLOW):
            if n % 2:
                sock = _idle_unix(str(k.socket))
                head = b"POST /v1/credentials HTTP/1.1\r\nHost: kontextd\r\nX-Slow: " + b"a" * 200
            else:
                sock = socket.create_connection(("127.0.0.1", k.port), timeout=10)
                head = b"GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
            socks.append(sock)
            thread = threading.Thread(target=_slow_loris, args=(sock, stop, head), daemon=True)
            thread.start()
            threads.append(thread)
        for _ in range(10):  # oversized: a huge declared body, and an endless header line
            big = socket.create_connection(("127.0.0.1", k.port), timeout=10)
            big.sendall(
                b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 999999999999\r\n\r\n" + b"a" * 65536
            )
            socks.append(big)
            long_header = _idle_unix(str(k.socket))
            with contextlib.suppress(OSError):
                long_header.sendall(b"GET /v1/status HTTP/1.1\r\nX-Long: " + b"b" * 200_000)
            socks.append(long_header)
        time.sleep(1.0)  # let the daemon accept them all
        took = _exec_takes(k, agent)
        open_files = len(os.listdir(f"/proc/{k.daemon_pid}/fd"))
    finally:
        stop.set()
        for sock in socks:
            sock.close()
    assert took < PROMPT, took
    assert open_files < IDLE + LOOPBACK_FLOOD + 4 * SLOW + 150, open_files
    # Afterwards the daemon is whole: the loopback port answers again, exec is prompt,
    # the reaper never hit the open-file limit.
    assert wait_until(lambda: _jwks_ok(k), timeout=PROMPT)
    assert _exec_takes(k, agent) < PROMPT
    k.ok("audit", "verify")
    assert "Too many open files" not in k.log_file.read_text()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("where", ["control", "loopback"])
def test_out_of_file_descriptors_the_daemon_waits_instead_of_spinning(
    fresh_kx: Kontext, where: str
) -> None:
    """accept() failing with EMFILE leaves the connection in the backlog, so the
    socket stays readable: the daemon must pause accepting, not spin on it."""
    k = fresh_kx
    k.start()
    agent = api_new_agent(k, "github:pulls:read", prefix="emfile")
    pid = k.daemon_pid
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    open_now = len(os.listdir(f"/proc/{pid}/fd"))
    socks: list[socket.socket] = []
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_now + 3, limits[1]))
        for _ in range(20):  # most wait in the backlog
            if where == "control":
                socks.append(_idle_unix(str(k.socket)))
            else:
                socks.append(socket.create_connection(("127.0.0.1", k.port), timeout=10))
        cpu_before = _cpu_seconds(pid)
        time.sleep(2.0)
        spent = _cpu_seconds(pid) - cpu_before
    finally:
        for sock in socks:
            sock.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
    assert spent < 0.5, f"the daemon used {spent:.2f} s of CPU in 2 s while out of descriptors"
    failures = k.log_file.read_text().count("accept failed")
    assert 1 <= failures <= 40, failures  # said, about ten times a second, not in a loop
    assert _exec_takes(k, agent) < PROMPT  # and it serves again once descriptors are free
