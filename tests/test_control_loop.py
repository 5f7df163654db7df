"""The control socket's selector loop, as a client of the raw socket sees it.

The loop answers exec's three lease requests itself and hands any other request,
with the bytes it read and the leases the connection holds, to a handler thread.
These tests speak HTTP/1.1 over the Unix socket byte for byte, like ``kontext exec``
(or a third-party client) would, against a real daemon.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import (
    Kontext,
    api_audit,
    api_new_agent,
    approve_over_http,
    wait_until,
    without_not_connected,
)

SCOPES = ["github:pulls:read"]
EXITED = "lease closed: the process exited with status {}"
WENT_AWAY = "lease closed: kontext exec went away"


def request(method: str, path: str, body: Any = None, raw: bytes | None = None) -> bytes:
    data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: kontextd\r\nContent-Length: {len(data)}\r\n"
    if data:
        head += "Content-Type: application/json\r\n"
    return (head + "\r\n").encode() + data


class Raw:
    """One control connection; ``answer`` reads exactly one HTTP response."""

    def __init__(self, k: Kontext) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(k.socket))
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the daemon closed the connection; unread: {self.buf!r}"
        self.buf += chunk

    def answer(self) -> tuple[int, dict[str, Any]]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        assert headers["content-type"] == "application/json"
        return int(lines[0].split()[1]), json.loads(body)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        self.sock.sendall(request(method, path, body))
        return self.answer()

    def close(self) -> None:
        self.sock.close()


def active(k: Kontext, token: str) -> bool:
    return bool(k.introspect(token)["active"])


def ended(k: Kontext, name: str, jti: str) -> list[dict[str, Any]]:
    return [e for e in api_audit(k, name) if e["event"] == "credential.revoked" and e["jti"] == jti]


def test_handed_off_lease_connection_keeps_its_lease(kx: Kontext) -> None:
    name = api_new_agent(kx)
    conn = Raw(kx)
    status, issued = conn.call("POST", "/v1/credentials", {"agent": name})
    assert status == 201, issued
    token, jti = issued["token"], issued["jti"]
    assert active(kx, token)
    # Another route on the same connection goes to a handler thread, lease and all.
    status, info = conn.call("GET", "/v1/status")
    assert status == 200 and info["pid"] == kx.daemon_pid, info
    assert conn.call("POST", "/v1/lease/child", {"pid": os.getpid()}) == (200, {"ok": True})
    status, live = conn.call("GET", "/v1/credentials", None)
    assert status == 200 and jti in [c["jti"] for c in live["credentials"]], live
    assert active(kx, token)
    assert ended(kx, name, jti) == []
    conn.close()
    assert wait_until(lambda: not active(kx, token))
    assert wait_until(lambda: len(ended(kx, name, jti)) == 1)
    assert ended(kx, name, jti)[0]["reason"] == WENT_AWAY


def test_pipelined_lease_requests_are_answered_in_order(kx: Kontext) -> None:
    name = api_new_agent(kx)
    conn = Raw(kx)
    conn.sock.sendall(
        request("POST", "/v1/credentials", {"agent": name})
        + request("POST", "/v1/lease/child", {"pid": os.getpid()})
        + request("POST", "/v1/lease/release", {"status": 3})
    )
    status, issued = conn.answer()
    assert status == 201, issued
    assert conn.answer() == (200, {"ok": True})
    assert conn.answer() == (200, {"released": True})
    # Released means revoked before the answer left (it waits for the commit).
    assert not active(kx, issued["token"])
    (revoked,) = ended(kx, name, issued["jti"])
    assert revoked["reason"] == EXITED.format(3)
    conn.close()
    time.sleep(0.05)  # closing the released connection must not revoke a second time
    assert len(ended(kx, name, issued["jti"])) == 1


def test_a_request_sent_byte_by_byte_is_answered(kx: Kontext) -> None:
    name = api_new_agent(kx)
    conn = Raw(kx)

    def dribble(data: bytes) -> tuple[int, dict[str, Any]]:
        for i in range(len(data)):
            conn.sock.sendall(data[i : i + 1])
            time.sleep(0.0005)
        return conn.answer()

    status, issued = dribble(request("POST", "/v1/credentials", {"agent": name}))
    assert status == 201, issued
    assert active(kx, issued["token"])
    status, info = dribble(request("GET", "/v1/status"))  # handed off mid-connection
    assert status == 200 and "pid" in info, info
    assert dribble(request("POST", "/v1/lease/release", {"status": 0})) == (
        200,
        {"released": True},
    )
    assert not active(kx, issued["token"])
    assert ended(kx, name, issued["jti"])[0]["reason"] == EXITED.format(0)
    conn.close()


def test_many_concurrent_leases_keep_the_audit_chain_whole(kx: Kontext) -> None:
    name = api_new_agent(kx)
    count = 64
    start = threading.Barrier(count)

    def lease(_: int) -> tuple[str, str, bool]:
        start.wait(timeout=20)
        conn = Raw(kx)
        try:
            status, issued = conn.call("POST", "/v1/credentials", {"agent": name})
            assert status == 201, issued
            return issued["jti"], issued["token"], active(kx, issued["token"])
        finally:
            conn.close()

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(lease, range(count)))
    assert all(was_active for _, _, was_active in results)
    jtis = {jti for jti, _, _ in results}
    assert len(jtis) == count

    def all_revoked() -> bool:
        events = api_audit(kx, name)
        return sum(1 for e in events if e["event"] == "credential.revoked") >= count

    assert wait_until(all_revoked, timeout=10)
    assert not any(active(kx, token) for _, token, _ in results)
    events = [e for e in api_audit(kx, name) if e["event"].startswith("credential.")]
    for kind in ("credential.issued", "credential.revoked"):
        seen = [e["jti"] for e in events if e["event"] == kind]
        assert sorted(seen) == sorted(jtis), kind  # each jti exactly once
    assert {e["reason"] for e in events if e["event"] == "credential.revoked"} == {WENT_AWAY}
    verified = kx.ok("audit", "verify")
    assert "intact" in verified.stdout, verified.stdout


def test_revoked_consent_is_seen_at_once(kx: Kontext) -> None:
    name = api_new_agent(kx)

    def issue() -> tuple[int, dict[str, Any]]:
        conn = Raw(kx)
        try:
            return conn.call("POST", "/v1/credentials", {"agent": name})
        finally:
            conn.close()

    assert issue()[0] == 201  # the grant is now read (and cached)
    revoked = kx.ok("consent", "revoke", f"agent:{name}")
    assert f"revoked 1 grant to agent:{name}" in revoked.stdout
    status, refused = issue()
    assert status == 403 and refused["error"]["code"] == "consent_required", refused
    proc = kx.run("exec", "--agent", name, "--", "true")  # not a terminal: never waits
    assert proc.returncode == 122, proc.stderr
    assert "consent" in proc.stderr
    approve_over_http(kx, name, SCOPES)
    status, issued = issue()
    assert status == 201, issued
    assert kx.run("exec", "--agent", name, "--", "true").returncode == 0


def test_errors_in_the_loop_answer_once_and_it_serves_on(kx: Kontext) -> None:
    name = api_new_agent(kx)
    conn = Raw(kx)
    conn.sock.sendall(request("POST", "/v1/credentials", raw=b'{"agent": '))
    status, error = conn.answer()
    assert status == 400 and error["error"]["code"] == "invalid", error
    # No lease yet: a release is refused, and the connection still answers in order.
    status, error = conn.call("POST", "/v1/lease/release", {"status": 0})
    assert status == 400 and "holds no credential" in error["error"]["message"], error
    status, issued = conn.call("POST", "/v1/credentials", {"agent": name})
    assert status == 201, issued
    for bad in (999, "0", True, None):
        status, error = conn.call("POST", "/v1/lease/release", {"status": bad})
        assert status == 400 and error["error"]["code"] == "invalid", (bad, error)
    assert active(kx, issued["token"])  # a refused release ends nothing
    assert conn.call("POST", "/v1/lease/release", {"status": 7}) == (200, {"released": True})
    assert not active(kx, issued["token"])
    conn.close()
    assert [e["reason"] for e in ended(kx, name, issued["jti"])] == [EXITED.format(7)]
    proc = kx.run("exec", "--agent", name, "--", "sh", "-c", "exit 5")
    assert proc.returncode == 5 and without_not_connected(proc.stderr) == "", proc.stderr
