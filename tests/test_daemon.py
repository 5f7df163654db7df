"""kontextd: file modes, peer-uid checks, one instance, crashes, clean shutdown, HTTP hygiene.

Tests that kill, stop or reconfigure a daemon use ``fresh_kx`` (a home of their
own); ``kx`` is only read from or sent bad input that must change nothing.
"""

from __future__ import annotations

import ast
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    KONTEXT,
    KONTEXTD,
    Kontext,
    api_audit,
    one_line_error,
    short_home,
    wait_until,
    without_not_connected,
)

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def gone(pid: int) -> bool:
    """The process has exited (our container's init may leave it a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def read_until_ready(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    """A foreground kontextd's stderr up to its ``ready`` line (or its death)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()  # raw reads: a buffered readline would hide data from select
    deadline, seen = time.monotonic() + timeout, b""
    while b"kontextd: ready" not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"kontextd not ready: {seen!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"kontextd exited ({proc.wait(5)}): {seen!r}"
            seen += chunk
    return seen.decode()


def foreground(env: dict[str, str], prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "kontextd"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_until_ready(proc)
    except BaseException:
        proc.kill()
        proc.communicate(timeout=10)
        raise
    return proc


def finish(
    proc: subprocess.Popen[str], timeout: float = 10, sig: int = signal.SIGTERM
) -> tuple[int, str]:
    """Signal a foreground daemon to stop; return its status and remaining stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def events(k: Kontext, kind: str) -> list[dict[str, Any]]:
    return [e for e in api_audit(k) if e.get("event") == kind]


# -- files and the first start -----------------------------------------------------


def test_first_start_announces_itself_and_the_fallback_once(fresh_kx: Kontext) -> None:
    first = fresh_kx.ok("agent", "list")
    lines = first.stderr.splitlines()
    assert len([ln for ln in lines if ln.startswith("kontext: started kontextd")]) == 1
    fallback = [ln for ln in lines if "no OS keyring backend works here" in ln]
    assert len(fallback) == 1 and "secrets.fallback refuse" in fallback[0]
    assert "Traceback" not in first.stderr

    second = fresh_kx.ok("agent", "list")
    assert "started kontextd" not in second.stderr
    assert "keyring" not in second.stderr

    # Restarted (as every auto-start after a stop is), it is not announced again:
    # once per home. daemon status and the log still say it.
    fresh_kx.ok("daemon", "stop")
    third = fresh_kx.ok("agent", "list")
    started = [ln for ln in third.stderr.splitlines() if ln.startswith("kontext: started kontextd")]
    assert len(started) == 1 and "keyring" not in third.stderr, third.stderr
    assert fresh_kx.log_file.read_text().count("no OS keyring backend works here") == 2

    status = json.loads(fresh_kx.ok("daemon", "status", "--json").stdout)
    assert status["secrets_fallback"] is True
    assert status["secrets"].startswith("file:")
    assert status["non_dumpable"] is True
    assert status["pid"] == fresh_kx.daemon_pid


def test_runtime_secrets_and_log_files_are_private(fresh_kx: Kontext) -> None:
    name = fresh_kx.agent()
    proc, _ = fresh_kx.token_for(name)
    fresh_kx.close(proc)
    home = fresh_kx.home
    assert mode(fresh_kx.runtime) == 0o700
    assert stat.S_ISSOCK(os.lstat(fresh_kx.socket).st_mode)
    assert mode(fresh_kx.socket) == 0o600
    assert mode(fresh_kx.log_file) == 0o600
    secrets = home / "data" / "secrets"
    assert mode(secrets) == 0o700
    keys = list(secrets.iterdir())
    assert keys, "the signing key should be in the file fallback"
    for key in keys:
        assert mode(key) == 0o600, key
    # Nothing the daemon wrote under its home is open to group or others: not the
    # database, not its -wal/-shm (they hold the same audit rows), not the port file.
    for path in home.rglob("*"):
        assert mode(path) & 0o077 == 0, f"{path} is {mode(path):o}"


# -- who may talk to the control socket ------------------------------------------

NOBODY_CLIENT = r"""
import collections, socket, sys, time
from kontext_cli import client, errors
from kontext.common import paths

# What a raw HTTP client gets: one 403 answer, then the connection is closed.
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: kontextd\r\nContent-Length: 0\r\n\r\n")
except BrokenPipeError:
    pass  # refused before our request was read; the answer is still there to read
out = b""
try:
    while chunk := s.recv(65536):
        out += chunk
except ConnectionResetError:
    pass  # the daemon closed with our request unread
print(repr(out.decode()))

# What kontext's own client makes of it, past its own check of the socket's owner
# and peer uid (which would refuse before connecting). The refusal can come before
# the request is sent (always, when the client pauses between connecting and asking).
seen = collections.Counter()
for attempt in range(int(sys.argv[2])):
    try:
        raw = socket.socket(socket.AF_UNIX)
        raw.connect(paths.resolve().socket)
        conn = client.Connection(raw)
        time.sleep(0.1 if attempt % 2 else 0)
        conn.call("GET", "/v1/status")
        seen["served"] += 1
    except errors.KontextError as exc:
        seen[f"{type(exc).__name__}: {exc}"] += 1
print(repr(dict(seen)))
"""


def test_another_uid_is_refused_and_audited(fresh_kx: Kontext) -> None:
    fresh_kx.start()
    # The 0700 runtime dir and 0600 socket already keep uid 65534 out at the file
    # system. To prove the second, independent guard — the daemon's own SO_PEERCRED
    # check — we open the path up for this test only (as a careless chmod, or a
    # socket bind-mounted into a sandbox would), let uid 65534 connect, and restore.
    opened = [(fresh_kx.home, 0o711), (fresh_kx.runtime, 0o711), (fresh_kx.socket, 0o666)]
    before = [(path, mode(path)) for path, _ in opened]
    tries = 10
    try:
        for path, wide in opened:
            os.chmod(path, wide)
        proc = subprocess.run(
            [*AS_NOBODY, sys.executable, "-c", NOBODY_CLIENT, str(fresh_kx.socket), str(tries)],
            capture_output=True,
            text=True,
            timeout=60,
            env=fresh_kx.env,
        )
        cli = subprocess.run(
            [*AS_NOBODY, KONTEXT, "agent", "list"],
            capture_output=True,
            text=True,
            timeout=30,
            env=fresh_kx.env,
        )
    finally:
        for path, original in before:
            os.chmod(path, original)
    assert proc.returncode == 0, proc.stderr
    raw, seen = (ast.literal_eval(line) for line in proc.stdout.splitlines())
    head, _, body = raw.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 403")
    assert json.loads(body)["error"]["code"] == "forbidden"
    assert '"pid"' not in body  # the status it asked for was not served
    # Every attempt is told why, never "lost the connection" (and never served).
    assert seen == {"Forbidden: this daemon serves another OS user.": tries}
    one_line_error(cli, 9)
    assert "another user's socket is never used" in cli.stderr

    def refused() -> list[dict[str, Any]]:
        return [e for e in events(fresh_kx, "control.refused") if e["peer"]["uid"] == NOBODY]

    # The CLI saw that the socket is not its user's and never connected (not audited).
    assert "belongs to uid 0, not you" in cli.stderr
    assert wait_until(lambda: len(refused()) == tries + 1)
    assert all(e["peer"]["pid"] for e in refused())
    fresh_kx.ok("daemon", "status")  # its own user is still served


# -- one daemon per home ---------------------------------------------------------


def test_second_daemon_for_the_same_home_refuses(kx: Kontext) -> None:
    pid = kx.daemon_pid
    proc = subprocess.run([KONTEXTD], env=kx.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 4  # the exit table's "already exists" (Conflict)
    assert "already running" in proc.stderr and str(pid) in proc.stderr
    assert "Traceback" not in proc.stderr
    # The loser left the winner's socket and port file alone.
    assert kx.daemon_pid == pid
    assert json.loads(kx.ok("daemon", "status", "--json").stdout)["pid"] == pid


def test_racing_first_commands_start_one_daemon(fresh_kx: Kontext) -> None:
    procs = [fresh_kx.popen("agent", "list") for _ in range(8)]
    results = [(p.communicate(timeout=60), p.returncode) for p in procs]
    assert [code for _, code in results] == [0] * 8, results
    notices = [ln for (_, err), _ in results for ln in err.splitlines() if "started kontextd" in ln]
    assert len(notices) == 1, notices
    pid = fresh_kx.daemon_pid
    assert notices[0].endswith(f"(pid {pid})")
    assert len(events(fresh_kx, "daemon.started")) == 1


def test_sigkilled_daemon_is_replaced_and_its_leases_are_lost(fresh_kx: Kontext) -> None:
    name = fresh_kx.agent()
    holder, env = fresh_kx.token_for(name)
    token, jti = env["KONTEXT_TOKEN"], env["KONTEXT_CREDENTIAL_ID"]
    assert fresh_kx.introspect(token)["active"] is True
    old = fresh_kx.daemon_pid
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: gone(old))
    assert fresh_kx.socket.exists()  # a stale socket is left behind

    listing = fresh_kx.run("agent", "list")
    assert listing.returncode == 0, listing.stderr
    assert "started kontextd" in listing.stderr
    assert name in listing.stdout
    assert fresh_kx.daemon_pid != old
    assert fresh_kx.introspect(token) == {"active": False}
    (revoked,) = [e for e in events(fresh_kx, "credential.revoked") if e["jti"] == jti]
    assert "lease lost" in revoked["reason"]

    # The command outlived the daemon: its exit status still passes through, with
    # one warning that the lease is gone instead of a 125 "kontext failed".
    _, err = holder.communicate("", timeout=10)
    assert holder.returncode == 0, err
    lines = without_not_connected(err).splitlines()
    assert len(lines) == 1 and lines[0].startswith("kontext: warning: "), err


def test_sigterm_stops_cleanly_and_ends_live_credentials(fresh_kx: Kontext) -> None:
    daemon = foreground(fresh_kx.env)
    try:
        name = fresh_kx.agent()
        holder, env = fresh_kx.token_for(name)
        token, jti = env["KONTEXT_TOKEN"], env["KONTEXT_CREDENTIAL_ID"]
        started = time.monotonic()
        code, err = finish(daemon)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate(timeout=10)
    assert code == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in err
    assert not fresh_kx.socket.exists()
    assert not (fresh_kx.runtime / "http.json").exists()

    # The command outlives its daemon; its status still passes through.
    _, err = holder.communicate("", timeout=10)
    assert holder.returncode == 0, err
    assert len(without_not_connected(err).splitlines()) <= 1 and "Traceback" not in err
    # The next command starts a new daemon, which knows the credential is dead.
    fresh_kx.ok("daemon", "start")
    assert fresh_kx.introspect(token) == {"active": False}
    (revoked,) = [e for e in events(fresh_kx, "credential.revoked") if e["jti"] == jti]
    assert revoked["reason"] == "the daemon stopped"
    assert events(fresh_kx, "daemon.stopped")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_sigint_and_sighup_stop_cleanly_too(fresh_kx: Kontext, sig: signal.Signals) -> None:
    daemon = foreground(fresh_kx.env)
    code, err = finish(daemon, sig=sig)
    assert code == 0 and "Traceback" not in err
    assert not fresh_kx.socket.exists()
    assert not (fresh_kx.runtime / "http.json").exists()


def test_unsafe_runtime_dir_is_refused(fresh_kx: Kontext, tmp_path: Path) -> None:
    fresh_kx.runtime.mkdir(mode=0o755)
    fresh_kx.runtime.chmod(0o755)
    line = one_line_error(fresh_kx.run("agent", "list"), 5)
    assert "open to other users" in line and f"chmod 700 {fresh_kx.runtime}" in line
    fresh_kx.runtime.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    fresh_kx.runtime.symlink_to(elsewhere)
    line = one_line_error(fresh_kx.run("agent", "list"), 5)
    assert "symlink" in line
    assert list(elsewhere.iterdir()) == []  # nothing was created through the link


def test_too_long_a_home_is_one_clear_line() -> None:
    home = short_home()
    try:
        long_home = home / ("h" * 110)
        env = {**Kontext(long_home).env}
        direct = subprocess.run([KONTEXTD], env=env, capture_output=True, text=True, timeout=30)
        assert direct.returncode != 0
        assert "too long" in direct.stderr and "Traceback" not in direct.stderr
        line = one_line_error(Kontext(long_home).run("agent", "list"), 5)
        assert "too long" in line and "shorter KONTEXT_HOME" in line
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- the loopback port ---------------------------------------------------------------


def raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example:{port}", 421),
        ("localhost:{port}", 200),
        ("127.0.0.1:{port}", 200),
        ("[::1]:{port}", 200),
        ("LOCALHOST:{port}", 200),
        ("localhost", 421),
        ("localhost:1", 421),
        ("127.0.0.1.evil.example:{port}", 421),
        ("", 421),
    ],
)
def test_host_header_is_checked(kx: Kontext, host: str, status: int) -> None:
    with kx.http() as client:
        answer = client.get("/jwks.json", headers={"Host": host.format(port=kx.port)})
    assert answer.status_code == status
    if status == 421:
        assert answer.json()["error"]["code"] == "misdirected"
        assert "keys" not in answer.text
        # The daemon hangs up after a 421 and says so, so a client does not reuse
        # the dead connection for its next request.
        assert answer.headers["Connection"] == "close"
    else:
        assert answer.json()["keys"]


def test_missing_host_header_is_misdirected(kx: Kontext) -> None:
    answer = raw_http(kx.port, b"GET /jwks.json HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 421 ")
    assert b'"keys"' not in answer


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://evil.example", 403),
        ("null", 403),
        ("http://127.0.0.1:1", 403),
        ("http://127.0.0.1:{port}", 200),
        ("http://localhost:{port}", 200),
    ],
)
def test_introspect_checks_origin(kx: Kontext, origin: str, status: int) -> None:
    with kx.http() as client:
        answer = client.post(
            "/introspect", data={"token": "x.y.z"}, headers={"Origin": origin.format(port=kx.port)}
        )
    assert answer.status_code == status
    if status == 200:
        assert answer.json() == {"active": False}
    else:
        assert answer.json()["error"]["code"] == "forbidden"


def test_kept_alive_loopback_connections_answer_promptly(kx: Kontext) -> None:
    """A resource server introspecting over one connection is not slowed per request."""
    with kx.http() as client:
        client.get("/jwks.json")
        started = time.monotonic()
        for _ in range(10):
            assert client.post("/introspect", data={"token": "x.y.z"}).json() == {"active": False}
            assert client.get("/jwks.json").status_code == 200
        elapsed = time.monotonic() - started
    # Nagle's algorithm against delayed ACKs cost ~40 ms a request (0.8 s here).
    assert elapsed < 0.4, f"20 requests took {elapsed:.2f}s"


def still_serving(k: Kontext) -> None:
    with k.control() as control:
        assert control.get("/v1/status").status_code == 200
    with k.http() as client:
        assert client.get("/jwks.json").status_code == 200


def test_oversized_bodies_are_413_on_both_ports(kx: Kontext) -> None:
    big = b"token=" + b"a" * 70_000
    with kx.http() as client:
        answer = client.post(
            "/introspect",
            content=big,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"
    with kx.control() as control:
        answer = control.post(
            "/v1/agents",
            content=b'{"name":"' + b"a" * 70_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 413
    still_serving(kx)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"a string"', b"\xff\xfe", b'{"name": "x", '],
)
def test_malformed_json_to_the_control_api_is_400(kx: Kontext, body: bytes) -> None:
    with kx.control() as control:
        answer = control.post(
            "/v1/agents", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid" and "\n" not in error["message"]
    still_serving(kx)


def test_unknown_routes_and_methods(kx: Kontext) -> None:
    with kx.control() as control:
        answer = control.get("/v1/nope")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
        assert control.put("/v1/status", json={}).status_code == 405
    with kx.http() as client:
        assert client.get("/admin").status_code == 404
        assert client.get("/introspect").status_code == 405
    still_serving(kx)


def responses_to(sock: socket.socket, data: bytes) -> list[bytes]:
    """Send ``data`` and read until the server closes; the status lines it answered with."""
    sock.settimeout(10)
    sock.sendall(data)
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return [line for line in out.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


@pytest.mark.parametrize(
    ("where", "head"),
    [
        ("loopback", "POST /introspect HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example"),
        ("loopback", "POST /introspect HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain"),
        ("loopback", "GET /jwks.json HTTP/1.1\r\nHost: {host}"),
        ("loopback", "POST /nope HTTP/1.1\r\nHost: {host}"),
        ("control", "POST /v1/nope HTTP/1.1\r\nHost: kontextd"),
        ("control", "GET /v1/status HTTP/1.1\r\nHost: kontextd"),
    ],
)
def test_an_unread_body_never_becomes_a_request(kx: Kontext, where: str, head: str) -> None:
    """A body the server did not read must not be parsed as the next request.

    Otherwise a refused request smuggles a second one past the Origin check, and a
    token in the body turns up in the log as the 'method' of a bogus request.
    """
    host = f"127.0.0.1:{kx.port}"
    smuggled = (
        f"GET /jwks.json HTTP/1.1\r\nHost: {host}\r\n\r\n"
        if where == "loopback"
        else "GET /v1/status HTTP/1.1\r\nHost: kontextd\r\n\r\n"
    )
    request = (
        f"{head.format(host=host)}\r\nContent-Length: {len(smuggled)}\r\n\r\n{smuggled}"
    ).encode()
    if where == "loopback":
        sock = socket.create_connection(("127.0.0.1", kx.port))
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(kx.socket))
    with sock:
        answered = responses_to(sock, request)
    assert len(answered) == 1, answered  # one answer, then the connection is closed
    still_serving(kx)


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": ["github:pulls:read"], "ttl": "5m"},
        {"scopes": ["github:pulls:read"], "ttl": 5},
        {"scopes": ["github:pulls:read"], "ttl": True},
        {"scopes": ["github:pulls:read"], "target": "../x"},
        {"scopes": ["github:pulls:read"], "target": "acme\x00corp/backend"},
        {"scopes": ["github:pulls:read"], "target": "acme corp"},
        {"scopes": ["github:pulls:read"], "target": 7},
        {"scopes": "github:pulls:read"},
        {"scopes": ["github:pulls:read\n"]},
    ],
)
def test_daemon_validates_credential_requests(kx: Kontext, body: dict[str, Any]) -> None:
    """A client that skips the CLI's checks gets the same refusals, and nothing is issued."""
    name = kx.agent()
    with kx.control() as control:
        answer = control.post("/v1/credentials", json={"agent": name, **body})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid"
    assert [e for e in api_audit(kx, name) if e["event"].startswith("credential.")] == []


# -- non-dumpable ------------------------------------------------------------------------


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    home = short_home()
    os.chown(home, NOBODY, NOBODY)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_daemon_is_non_dumpable(nobody_home: Path) -> None:
    """A same-uid process cannot read the daemon's memory or environment.

    Tests run as root, who can read anything; so the daemon runs as uid 65534 in a
    home of its own, and another uid-65534 process tries to read it.
    """
    home = nobody_home
    env = {**Kontext(home).env, "HOME": str(home)}
    daemon = foreground(env, tuple(AS_NOBODY))
    peer = subprocess.Popen([*AS_NOBODY, "sleep", "30"])
    try:
        pid = daemon.pid  # setpriv execs the daemon in place
        assert json.loads((home / "run" / "http.json").read_text())["pid"] == pid
        # Non-dumpable: the kernel makes its /proc files root's.
        assert os.stat(f"/proc/{pid}/environ").st_uid == 0
        steal = subprocess.run(
            [*AS_NOBODY, "cat", f"/proc/{pid}/environ"], capture_output=True, timeout=10
        )
        assert steal.returncode != 0 and steal.stdout == b""
        # Control: an ordinary uid-65534 process is open to its own uid (once setpriv
        # has switched to it: until then the process is still root's).
        assert wait_until(lambda: os.stat(f"/proc/{peer.pid}/environ").st_uid == NOBODY)
        look = subprocess.run(
            [*AS_NOBODY, "cat", f"/proc/{peer.pid}/environ"], capture_output=True, timeout=10
        )
        assert look.returncode == 0
    finally:
        peer.kill()
        peer.wait(timeout=10)
        code, err = finish(daemon)
    assert code == 0, err


# -- the daemon commands -------------------------------------------------------------


def test_daemon_status_and_stop(fresh_kx: Kontext) -> None:
    assert fresh_kx.run("daemon", "status").returncode == 5  # not running yet
    fresh_kx.start()
    pid = fresh_kx.daemon_pid
    status = fresh_kx.ok("daemon", "status")
    assert "pid:" in status.stdout and str(pid) in status.stdout
    assert "plaintext-file fallback" in status.stdout
    again = fresh_kx.ok("daemon", "start")
    assert "already running" in again.stderr and str(pid) in again.stderr

    stop = fresh_kx.ok("daemon", "stop")
    assert f"stopped kontextd (pid {pid})" in stop.stderr
    assert wait_until(lambda: gone(pid))
    assert not fresh_kx.socket.exists()
    assert "not running" in fresh_kx.ok("daemon", "stop").stderr
    down = fresh_kx.run("daemon", "status")
    assert down.returncode == 5 and "not running" in down.stderr


def test_kontextd_version(kx: Kontext) -> None:
    proc = subprocess.run([KONTEXTD, "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    version = kx.ok("--version").stdout.split()[-1]
    assert proc.stdout.strip() == f"kontextd {version}"
