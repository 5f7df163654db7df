"""No token outside the one child that was given it.

One session in a home of its own (with the daemon logging at debug level, the
chattiest it gets): three agents, several execs, revocations, the read commands a
user runs, and some hostile requests that carry a token where it does not belong.
Then every token issued is searched for: in the parent's environment, the
wrapper's environment and argv, the child's argv, the daemon's log, the audit log,
every byte of the SQLite database and its -wal, every file under KONTEXT_HOME,
and everything ``kontext`` printed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Kontext, short_home


@dataclass
class Session:
    kx: Kontext
    tokens: list[str] = field(default_factory=list)
    # (where, bytes) captured during the session: /proc files, command output.
    seen: list[tuple[str, bytes]] = field(default_factory=list)

    def keep(self, where: str, data: bytes | str) -> None:
        self.seen.append((where, data.encode() if isinstance(data, str) else data))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.kx.run(*args)
        self.keep(f"kontext {' '.join(args)} (stdout)", proc.stdout)
        self.keep(f"kontext {' '.join(args)} (stderr)", proc.stderr)
        return proc


def proc_file(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def children(pid: int) -> list[int]:
    return [int(p) for p in proc_file(pid, f"task/{pid}/children").split()]


def needles(token: str) -> list[bytes]:
    """The token, and its signature alone (what would make a partial copy usable)."""
    return [token.encode(), token.rsplit(".", 1)[1].encode()]


def hostile_requests(k: Kontext, token: str) -> None:
    """A token where it should never be: query strings, paths, headers, bad requests."""
    with k.http() as client:
        client.post(f"/introspect?token={token}", data={"token": token})
        client.get(f"/introspect?token={token}")
        client.get(f"/nope/{token}")
        client.get("/jwks.json", headers={"Authorization": f"Bearer {token}"})
        client.post("/introspect", data={"token": token}, headers={"Host": "evil.example"})
        client.post("/introspect", data={"token": token}, headers={"Origin": "http://evil"})
        client.post("/introspect", data={"token": [token, token]})
    for line in (
        f"GET /?t={token} HTTP/1.1 junk",
        f"{token} / HTTP/1.1",
        f"GET /?t={token} HTTP/9",
    ):
        with socket.create_connection(("127.0.0.1", k.port), timeout=10) as sock:
            sock.sendall(line.encode() + b"\r\n\r\n")
            while sock.recv(65536):
                pass
    with k.control() as control:
        control.post("/v1/revoke", json={"jti": token})
        control.post("/v1/agents", json={"name": token, "allow": ["github:pulls:read"]})
        control.get(f"/v1/audit?agent={token}")
        control.get(f"/v1/agents/{token}")


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    home = short_home()
    k = Kontext(home)
    k.env["KONTEXT_DEBUG"] = "1"  # the daemon inherits it from the command that starts it
    s = Session(k)
    try:
        s.cli("daemon", "start")
        gh = k.agent("github:pulls:read", "github:issues:read", prefix="gh")
        sl = k.agent("slack:chat:write", prefix="sl")
        both = k.agent("github:pulls:read", "slack:chat:write", prefix="both")
        runs = [
            (gh, ()),
            (gh, ("--scope", "github:issues:read")),
            (sl, ("--ttl", "5m")),
            (both, ("--target", "acme-corp/backend", "--scope", "github:pulls:read")),
            (both, ()),
        ]
        live = []
        for agent, extra in runs:
            proc, env = k.token_for(agent, *extra)
            live.append((proc, env))
            s.tokens.append(env["KONTEXT_TOKEN"])
            (child,) = children(proc.pid)
            s.keep(f"/proc/{proc.pid}/environ (wrapper)", proc_file(proc.pid, "environ"))
            s.keep(f"/proc/{proc.pid}/cmdline (wrapper)", proc_file(proc.pid, "cmdline"))
            s.keep(f"/proc/{child}/cmdline (child)", proc_file(child, "cmdline"))
            assert env["KONTEXT_TOKEN"].encode() in proc_file(child, "environ")  # the one place
        s.keep("/proc/daemon/cmdline", proc_file(k.daemon_pid, "cmdline"))
        s.keep("/proc/daemon/environ", proc_file(k.daemon_pid, "environ"))
        for token in s.tokens:
            assert k.introspect(token)["active"] is True
            hostile_requests(k, token)
        for args in (
            ("agent", "list"),
            ("agent", "list", "--json"),
            ("agent", "show", both),
            ("agent", "show", gh, "--json"),
            ("daemon", "status"),
            ("daemon", "status", "--json"),
            ("audit", "tail", "-n", "500"),
            ("audit", "tail", "-n", "500", "--json"),
        ):
            s.cli(*args)
        s.cli("revoke", "credential", live[0][1]["KONTEXT_CREDENTIAL_ID"])
        s.cli("revoke", f"agent:{sl}")
        for proc, _ in live:
            _, err = proc.communicate("", timeout=10)
            s.keep(f"kontext exec (pid {proc.pid}) stderr", err)
            k.close(proc)
        s.cli("audit", "tail", "-n", "1000", "--json")
        s.cli("audit", "tail", "-n", "1000")
        yield s
    finally:
        k.stop()
        shutil.rmtree(home, ignore_errors=True)


def assert_absent(session: Session, where: str, data: bytes) -> None:
    for token in session.tokens:
        for needle in needles(token):
            assert needle not in data, f"a token (or its signature) is in {where}"


def test_the_session_issued_distinct_tokens(session: Session) -> None:
    assert len(session.tokens) == 5 and len(set(session.tokens)) == 5
    for token in session.tokens:
        assert session.kx.introspect(token) == {"active": False}


def test_not_in_the_parent_environment(session: Session) -> None:
    assert_absent(
        session,
        "the test process's environment",
        "\0".join(f"{k}={v}" for k, v in os.environ.items()).encode(),
    )


def test_not_in_wrapper_environ_or_any_argv_or_output(session: Session) -> None:
    assert any("wrapper" in where for where, _ in session.seen)
    for where, data in session.seen:
        assert_absent(session, where, data)


def test_not_in_the_daemon_log(session: Session) -> None:
    log = session.kx.log_file.read_bytes()
    assert b"DEBUG" in log  # the chattiest level was on
    assert_absent(session, "the daemon log", log)


def test_not_in_the_audit_log(session: Session) -> None:
    events = session.kx.audit()
    assert {"credential.issued", "credential.revoked"} <= {e["event"] for e in events}
    assert_absent(session, "the audit log", json.dumps(events).encode())


def test_not_in_the_database_files(session: Session) -> None:
    db = session.kx.database
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    assert db in files
    for path in files:  # kontext.db, -wal, -shm: raw bytes, whatever SQLite keeps
        assert_absent(session, str(path), path.read_bytes())


def test_not_anywhere_under_kontext_home(session: Session) -> None:
    for path in session.kx.home.rglob("*"):
        if path.is_file():
            assert_absent(session, str(path), path.read_bytes())
