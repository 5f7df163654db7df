"""Attacker 3, the agent: everything it tries from inside ``kontext exec`` is refused.

Each test starts a real agent under ``kontext exec`` whose command is
``agent_side.py``: it unsets every ``KONTEXT_*`` variable, gets away from the
process exec started (``sh -c``, ``setsid -f``, a double fork) and tries each
attack, reporting what it got. From outside we then check that nothing changed:
no credential for another agent, no agent created or re-enabled, no grant or
credential revoked, no key rotated, no file read or written, the daemon the
same process, the audit chain intact.

Two walls are attacked apart. Confinement (the default, ``exec.confine = "auto"``)
hides kontext's files, the control socket and the session bus and keeps signals
and ptrace inside the agent's tree. The daemon's second wall — callers classified
from kernel facts — is attacked with confinement switched off (``--no-confine``
and ``exec.confine = "off"``), where the agent can reach the socket.

These need Landlock ABI >= 6 and unprivileged user namespaces: CI has both; a
kernel without them skips with the reason (``kontext doctor`` says the same).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KONTEXT, Kontext, api_new_agent, short_home

AGENT_SIDE = str(Path(__file__).with_name("agent_side.py"))
PY = sys.executable
VIAS = ["direct", "sh", "setsid", "doublefork"]


def _confinement_available() -> str | None:
    if not sys.platform.startswith("linux"):
        return "confinement is Linux-only"
    from kontext_cli import linux

    if linux.landlock_abi() < 6:
        return f"this kernel has Landlock ABI {linux.landlock_abi()}; confinement needs 6"
    probe = subprocess.run(["unshare", "-Ur", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unprivileged user namespaces are unavailable: {probe.stderr.strip()}"
    return None


MISSING = _confinement_available()
needs_confinement = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


class Setup:
    """One daemon with three agents: the attacker, another, a disabled one."""

    def __init__(self, k: Kontext) -> None:
        self.k = k
        self.agent = api_new_agent(k, "github:pulls:read", "github:pulls:write", prefix="attacker")
        self.other = api_new_agent(k, "github:contents:write", prefix="victim")
        self.disabled = api_new_agent(k, "github:pulls:read", prefix="disabled")
        k.ok("agent", "disable", self.disabled)
        (k.home / "config" / "policy.d").mkdir(parents=True, exist_ok=True)
        k.ok("config", "set", "secrets.fallback", "allow")  # config.toml exists to be attacked

    def spec(self, tmp: Path, groups: list[str], **extra: Any) -> Path:
        k = self.k
        secrets = sorted((k.home / "data" / "secrets").glob("*"))
        spec = {
            "groups": groups,
            "home": str(k.home),
            "socket": str(k.socket),
            "kontext": KONTEXT,
            "agent": self.agent,
            "other_agent": self.other,
            "disabled_agent": self.disabled,
            "evil_agent": f"evil-{tmp.name[-20:].lower().strip('_')}".replace("_", "-"),
            "narrow_scope": "github:pulls:read",
            "database": str(k.database),
            "db_name": k.database.name,
            "secret_files": {
                "database": str(k.database),
                "WAL": f"{k.database}-wal",
                "OAuth client secret": str(k.runtime / "oauth-client-secret"),
                "config.toml": str(k.home / "config" / "config.toml"),
                "daemon log": str(k.log_file),
                "port file": str(k.runtime / "http.json"),
                **{f"fallback secret {p.name[:12]}": str(p) for p in secrets},
            },
            "dirs": {
                "config dir": str(k.home / "config"),
                "data dir": str(k.home / "data"),
                "runtime dir": str(k.runtime),
                "log dir": str(k.home / "log"),
            },
            "policy_dir": str(k.home / "config" / "policy.d"),
            "daemon_pid": k.daemon_pid,
            "outside_pid": os.getpid(),
            "strace": shutil.which("strace"),
            "bus_addresses": [],
            **extra,
        }
        path = tmp / "spec.json"
        path.write_text(json.dumps(spec))
        return path

    def attack(
        self,
        tmp: Path,
        groups: list[str],
        via: str = "direct",
        exec_args: tuple[str, ...] = (),
        agent: str | None = None,
        env: dict[str, str] | None = None,
        **extra: Any,
    ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
        """Run agent_side.py under ``kontext exec``; (the exec, the attacks' results)."""
        spec = self.spec(tmp, groups, **extra)
        out = tmp / "results.json"
        proc = self.k.run(
            "exec",
            "--agent",
            agent or self.agent,
            *exec_args,
            "--",
            PY,
            AGENT_SIDE,
            via,
            str(out),
            str(spec),
            timeout=600,
            env=env,
        )
        assert out.exists(), f"the agent side reported nothing: {proc.returncode} {proc.stderr}"
        return proc, json.loads(out.read_text())["results"]


def state(k: Kontext, other: str) -> dict[str, Any]:
    """Everything an attack might change, seen from outside."""
    with k.control() as api:
        agents = api.get("/v1/agents").json()["agents"]
        consent = api.get("/v1/consent").json()
        kids = sorted(key["kid"] for key in api.get("/v1/keys").json()["keys"])
        events = api.get("/v1/audit", params={"last": 10000}).json()["events"]
    files = {}
    for path in sorted((k.home / "config").rglob("*")):
        if path.is_file():
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "agents": sorted(
            (a["name"], a["disabled"], a["session_bus"], tuple(a["scopes"])) for a in agents
        ),
        "consent": consent,
        "kids": kids,
        "config files": files,
        "credentials for the other agent": [
            e["jti"]
            for e in events
            if e["event"] == "credential.issued"
            and e.get("agent", {}).get("id") == f"agent:{other}"
        ],
        "daemon pid": k.daemon_pid,
    }


def assert_refused(results: list[dict[str, Any]], expected: int) -> None:
    escaped = [r for r in results if r["escaped"]]
    assert not escaped, json.dumps(escaped, indent=1)
    assert len(results) >= expected, [r["name"] for r in results]


def assert_nothing_changed(setup: Setup, before: dict[str, Any]) -> None:
    k = setup.k
    assert state(k, setup.other) == before
    k.ok("daemon", "status")  # the same daemon still answers
    verify = k.run("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    k = Kontext(short_home())
    k.start()
    try:
        yield Setup(k)
    finally:
        k.stop()
        shutil.rmtree(k.home, ignore_errors=True)


# -- the first wall: confinement ----------------------------------------------------------


@needs_confinement
@pytest.mark.parametrize("via", VIAS)
def test_a_confined_agent_cannot_reach_the_daemon_at_all(
    setup: Setup, tmp_path: Path, via: str
) -> None:
    before = state(setup.k, setup.other)
    proc, results = setup.attack(tmp_path, ["raw", "cli"], via=via)
    assert proc.returncode == 0, proc.stderr
    assert_refused(results, 26)
    socket_tries = [r for r in results if r["name"].startswith("raw:")]
    assert all("FileNotFoundError" in r["detail"] for r in socket_tries), socket_tries
    cli_tries = {r["name"]: r["detail"] for r in results if r["name"].startswith("cli:")}
    assert all(d.startswith(("15 ", "122 ")) for d in cli_tries.values()), cli_tries
    assert "confinement" in cli_tries["cli: agent create"]
    assert_nothing_changed(setup, before)


@needs_confinement
@pytest.mark.parametrize("via", ["direct", "setsid", "doublefork"])
def test_a_confined_agent_cannot_touch_kontexts_files_signals_or_memory(
    setup: Setup, tmp_path: Path, via: str
) -> None:
    before = state(setup.k, setup.other)
    daemon = setup.k.daemon_pid
    proc, results = setup.attack(tmp_path, ["files", "signals", "ptrace"], via=via)
    assert proc.returncode == 0, proc.stderr
    assert_refused(results, 40)
    names = {r["name"] for r in results}
    assert {"read database", "read WAL", "read OAuth client secret", "read config.toml"} <= names
    assert {"kill(daemon_pid, SIGTERM)", "PTRACE_ATTACH wrapper_pid"} <= names
    assert not (setup.k.home / "config" / "policy.d" / "evil.cedar").exists()
    assert setup.k.daemon_pid == daemon
    assert_nothing_changed(setup, before)


@needs_confinement
def test_a_confined_agent_cannot_undo_its_mounts(setup: Setup, tmp_path: Path) -> None:
    before = state(setup.k, setup.other)
    proc, results = setup.attack(tmp_path, ["mounts"])
    assert proc.returncode == 0, proc.stderr
    assert_refused(results, 6)
    assert_nothing_changed(setup, before)


@needs_confinement
def test_what_a_confined_agent_keeps(setup: Setup, tmp_path: Path) -> None:
    """Its cwd, the rest of the file system, loopback, its own token and its exchange."""
    os.chdir(tmp_path)
    try:
        proc, results = setup.attack(tmp_path, ["works"])
    finally:
        os.chdir("/")
    assert proc.returncode == 0, proc.stderr
    failed = [r for r in results if not r["escaped"]]
    assert not failed, json.dumps(failed, indent=1)
    assert (tmp_path / "written-by-the-agent.txt").read_text() == "ok"
    assert len(results) >= 8


@needs_confinement
def test_a_confined_agent_keeps_its_terminal(setup: Setup, tmp_path: Path) -> None:
    import pty

    argv = [
        KONTEXT,
        "exec",
        "--agent",
        setup.agent,
        "--",
        "sh",
        "-c",
        "tty && test -t 0 && echo TTY-OK",
    ]
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the forked child
        os.execve(KONTEXT, argv, setup.k.env)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert b"TTY-OK" in out and b"/dev/pts/" in out, out
    assert os.waitstatus_to_exitcode(status) == 0


# -- the second wall: the daemon, with confinement off -----------------------------------


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("how", ["--no-confine", "exec.confine=off"])
def test_the_daemon_refuses_an_unconfined_agent_everything_but_its_own_lease(
    setup: Setup, tmp_path: Path, via: str, how: str
) -> None:
    k = setup.k
    exec_args: tuple[str, ...] = ("--no-confine",) if how == "--no-confine" else ()
    if how != "--no-confine":
        k.ok("config", "set", "exec.confine", "off")
    try:
        before = state(k, setup.other)
        proc, results = setup.attack(tmp_path, ["raw", "cli"], via=via, exec_args=exec_args)
    finally:
        k.ok("config", "set", "exec.confine", "auto")
    assert proc.returncode == 0, proc.stderr
    results = [r for r in results if r["name"] != "cli: config set"]  # a file: confinement's
    assert_refused(results, 25)
    for r in results:
        if r["name"].startswith("raw:"):
            assert r["detail"].startswith("403 ") and "agent_refused" in r["detail"], r
            assert f"inside agent:{setup.agent}" in r["detail"], r
    before["config files"] = state(k, setup.other)["config files"]
    assert_nothing_changed(setup, before)
    refused = [
        e
        for e in _events(k, "control.refused")
        if e.get("agent", {}).get("id") == f"agent:{setup.agent}"
    ]
    routes = {e["route"] for e in refused}
    assert {"POST /v1/credentials", "POST /v1/agents", "POST /v1/keys/rotate"} <= routes
    assert all(e["peer"]["pid"] and e["peer"]["kind"] == "agent" for e in refused)


def test_refusals_are_audited_without_flooding_the_log(setup: Setup) -> None:
    k = setup.k
    agent = api_new_agent(k, "github:pulls:read", prefix="flood")
    script = textwrap.dedent(
        f"""
        import socket
        for _ in range(200):
            s = socket.socket(socket.AF_UNIX)
            s.connect({str(k.socket)!r})
            s.sendall(b"GET /v1/agents HTTP/1.1\\r\\nHost: k\\r\\nConnection: close\\r\\n\\r\\n")
            assert b" 403 " in s.recv(4096)
            s.close()
        """
    )
    before = len(_events(k, "control.refused"))
    proc = k.run("exec", "--agent", agent, "--no-confine", "--", PY, "-c", script)
    assert proc.returncode == 0, proc.stderr
    added = _events(k, "control.refused")[before:]
    assert len(added) == 1, added  # one a minute per agent and route, with the count left out
    assert added[0]["route"] == "GET /v1/agents"


def test_no_confine_is_audited(setup: Setup) -> None:
    proc = setup.k.run("exec", "--agent", setup.agent, "--no-confine", "--", "true")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    (event,) = [e for e in _events(setup.k, "exec.unconfined")][-1:]
    assert event["reason"] == "--no-confine" and event["agent"]["id"] == f"agent:{setup.agent}"


def _events(k: Kontext, name: str) -> list[dict[str, Any]]:
    with k.control() as api:
        events = api.get("/v1/audit", params={"last": 10000}).json()["events"]
    return [e for e in events if e["event"] == name]


# -- the session bus (the Secret Service) ---------------------------------------------------

BUS_DRIVER = textwrap.dedent(
    """
    import json, os, subprocess, sys
    out = subprocess.run(
        ["gnome-keyring-daemon", "--unlock", "--components=secrets", "--daemonize"],
        input=b"test-password\\n", capture_output=True, timeout=30,
    )
    for line in out.stdout.decode().splitlines():
        name, _, value = line.partition("=")
        if name:
            os.environ[name] = value
    kontext, home, agent_side, tmp = sys.argv[1:5]
    env = {**os.environ, "KONTEXT_HOME": home}

    def run(*args):
        proc = subprocess.run([kontext, *args], env=env, capture_output=True, text=True,
                              timeout=300)
        return proc

    run("daemon", "start")
    status = json.loads(run("daemon", "status", "--json").stdout)
    assert status["secrets"].startswith("keyring:"), status
    import hashlib
    service = "kontext/" + hashlib.sha256(os.path.join(home, "data").encode()).hexdigest()[:16]
    lookup = (
        "import keyring; v = keyring.get_password(%r, %r); print('FOUND' if v else 'none')"
        % (service, "signing-key-" + status["signing_kid"])
    )
    results = {}
    for name, flags in (("hidden", []), ("allowed", ["--session-bus"])):
        agent = "bus-" + name
        run("agent", "create", agent, "--allow", "github:pulls:read", *flags)
        run("consent", "grant", "agent:" + agent, "--scope", "github:pulls:read", "--for", "1d")
        spec = {"groups": ["bus"], "bus_addresses": [os.environ["DBUS_SESSION_BUS_ADDRESS"]],
                "keyring_lookup": lookup}
        spec_path = os.path.join(tmp, name + ".json")
        with open(spec_path, "w") as fh:
            json.dump({**spec, "wrapper_pid": 0}, fh)
        out = os.path.join(tmp, name + ".out")
        proc = run("exec", "--agent", agent, "--ttl", "1m", "--", sys.executable, agent_side,
                   "direct", out, spec_path)
        found = json.load(open(out))["results"] if os.path.exists(out) else None
        results[name] = {"code": proc.returncode, "err": proc.stderr, "results": found}
    show = json.loads(run("agent", "show", "bus-allowed", "--json").stdout)
    results["show"] = show
    run("daemon", "stop")
    print(json.dumps(results))
    """
)


@needs_confinement
def test_the_session_bus_is_hidden_unless_the_agent_may_use_it(tmp_path: Path) -> None:
    for tool in ("dbus-run-session", "gnome-keyring-daemon"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: dbus, gnome-keyring)")
    home = short_home()
    (tmp_path / "home").mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(BUS_DRIVER)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KONTEXT_", "DBUS_", "PYTHON_K"))
    }
    env.update({"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "home")})
    # The consent page is answered for each agent by kontext's own stand-in browser.
    env["BROWSER"] = Kontext(home).env["BROWSER"]
    try:
        proc = subprocess.run(
            [
                "dbus-run-session",
                "--",
                PY,
                str(driver),
                KONTEXT,
                str(home),
                AGENT_SIDE,
                str(tmp_path),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.splitlines()[-1])
    finally:
        shutil.rmtree(home, ignore_errors=True)
    hidden, allowed = result["hidden"], result["allowed"]
    assert hidden["results"] is not None, hidden
    assert_refused(hidden["results"], 2)
    assert all(r["escaped"] for r in allowed["results"]), allowed  # it may, so it can
    assert result["show"]["session_bus"] is True


@needs_confinement
def test_abstract_sockets_made_outside_are_out_of_reach(setup: Setup, tmp_path: Path) -> None:
    """dbus-run-session's bus is often an abstract socket: Landlock scopes those."""
    name = f"kx-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(4)
    try:
        before = state(setup.k, setup.other)
        proc, results = setup.attack(tmp_path, ["bus"], bus_addresses=[f"unix:abstract={name}"])
    finally:
        listener.close()
    assert proc.returncode == 0, proc.stderr
    assert_refused(results, 1)
    assert "PermissionError" in results[0]["detail"] or "refused" in results[0]["detail"].lower()
    assert_nothing_changed(setup, before)


# -- who did it: audit events name the real caller (issue 17.4) -----------------------------


def test_audit_events_name_the_real_caller(setup: Setup) -> None:
    k = setup.k
    victim = api_new_agent(k, "github:pulls:read", prefix="named")
    with k.control() as api:  # this test process is the caller, as the user
        assert api.post("/v1/revoke", json={"agent": f"agent:{victim}"}).status_code == 200
    (revoked,) = [e for e in _events(k, "agent.revoked") if e["agent"]["id"] == f"agent:{victim}"]
    assert revoked["user"]["caller"] == {"pid": os.getpid(), "kind": "user"}
    # An (unconfined) agent may revoke its own credential: the reason names it and its pid.
    own = textwrap.dedent(
        f"""
        import json, os, socket
        body = json.dumps({{"jti": os.environ["KONTEXT_CREDENTIAL_ID"]}}).encode()
        s = socket.socket(socket.AF_UNIX)
        s.connect({str(k.socket)!r})
        s.sendall(b"POST /v1/revoke HTTP/1.1\\r\\nHost: k\\r\\nConnection: close\\r\\n"
                  b"Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
        print(s.recv(4096).split(b"\\r\\n")[0].decode(), os.getpid())
        """
    )
    proc = k.run("exec", "--agent", setup.agent, "--no-confine", "--", PY, "-c", own)
    status, pid = proc.stdout.split()[1], proc.stdout.split()[-1]
    assert status == "200", proc.stdout + proc.stderr
    mine = f"agent:{setup.agent}"
    ended = [e for e in _events(k, "credential.revoked") if e["agent"]["id"] == mine]
    assert ended[-1]["reason"] == f"revoked by agent:{setup.agent} (pid {pid})"


# -- where confinement is impossible: auto says so, require refuses ----------------------

WITHOUT = str(Path(__file__).with_name("without.py"))
needs_seccomp_helper = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.uname().machine not in ("x86_64", "aarch64"),
    reason="tests/security/without.py knows x86_64 and aarch64 syscall numbers",
)


def without(primitive: str, *argv: str) -> list[str]:
    """``argv`` run as if the kernel lacked ``primitive`` (a seccomp filter: without.py)."""
    return [PY, WITHOUT, primitive, "--", *argv]


def run_without(k: Kontext, primitive: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        without(primitive, KONTEXT, *args), capture_output=True, text=True, timeout=120, env=k.env
    )


@needs_seccomp_helper
@pytest.mark.parametrize(
    ("primitive", "words"),
    [("userns", "no user namespace"), ("landlock", "no Landlock")],
)
def test_auto_runs_unconfined_and_says_so_once(setup: Setup, primitive: str, words: str) -> None:
    k = setup.k
    peek = f"head -c 15 {k.database}"
    proc = run_without(k, primitive, "exec", "--agent", setup.agent, "--", "sh", "-c", peek)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "SQLite format 3"  # unconfined indeed: it read the database
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"kontext: warning: running agent:{setup.agent} unconfined: ")
    assert words in line and 'exec.confine = "off"' in line
    event = _events(k, "exec.unconfined")[-1]
    assert words in event["reason"] and event["agent"]["id"] == f"agent:{setup.agent}"
    doctor = json.loads(run_without(k, primitive, "doctor", "--json").stdout)
    assert doctor["confinement"]["level"] == "unconfined"
    assert words in doctor["confinement"]["reason"]


@needs_seccomp_helper
def test_require_refuses_to_run_unconfined(setup: Setup, tmp_path: Path) -> None:
    k = setup.k
    marker = tmp_path / "ran"
    k.ok("config", "set", "exec.confine", "require")
    try:
        without_userns = run_without(
            k, "userns", "exec", "--agent", setup.agent, "--", "touch", str(marker)
        )
        no_confine = k.run(
            "exec", "--agent", setup.agent, "--no-confine", "--", "touch", str(marker)
        )
        doctor = json.loads(run_without(k, "userns", "doctor", "--json").stdout or "{}")
        confined = k.run("exec", "--agent", setup.agent, "--", "true")
    finally:
        k.ok("config", "set", "exec.confine", "auto")
    for proc in (without_userns, no_confine):
        assert proc.returncode == 123, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith("kontext: exec.confine is 'require'"), line
    assert "--no-confine" in no_confine.stderr
    assert not marker.exists()
    assert doctor["confinement"]["level"] == "unconfined"
    assert [c["status"] for c in doctor["checks"] if c["name"] == "confine"] == ["fail"]
    if MISSING is None:
        assert confined.returncode == 0, confined.stderr


def test_doctor_reports_the_level(setup: Setup) -> None:
    report = json.loads(setup.k.run("doctor", "--json").stdout)
    level = report["confinement"]
    assert level["mode"] == "auto"
    if MISSING is None:
        assert level["level"] == "confined" and "Landlock" in level["reason"]
    else:
        assert level["level"] == "unconfined" and level["reason"]


@needs_confinement
def test_an_agent_cannot_start_in_kontexts_own_directory(setup: Setup) -> None:
    k = setup.k
    proc = subprocess.run(
        [KONTEXT, "exec", "--agent", setup.agent, "--", "true"],
        cwd=k.home / "data",
        capture_output=True,
        text=True,
        env=k.env,
        timeout=60,
    )
    assert proc.returncode == 125
    (line,) = proc.stderr.splitlines()
    assert "inside kontext's own files" in line and "cd elsewhere" in line
