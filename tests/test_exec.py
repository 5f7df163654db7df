"""``kontext exec``: status, streams and signals pass through; its own failures are distinct.

Every test drives the real ``kontext`` binary against a real daemon. The last
part checks that the fast path (no typer) and the typer definition read the same
command line the same way, and that the fast path really stays light.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KONTEXT, Kontext, api_audit, one_line_error, quiet, without_not_connected

from kontext_cli.execrun import ExecRequest, parse_fast

PY = sys.executable


def events_for(kx: Kontext, name: str, event: str) -> list[dict[str, object]]:
    return [e for e in api_audit(kx, name) if e.get("event") == event]


# -- exit status --------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_status_passes_through(kx: Kontext, code: int) -> None:
    name = kx.agent()
    proc = kx.run("exec", "--agent", name, "--", "sh", "-c", f"exit {code}")
    assert proc.returncode == code, proc.stderr
    assert without_not_connected(proc.stderr) == ""
    # The lease ends with the child, and the audit says how it ended.
    (revoked,) = events_for(kx, name, "credential.revoked")
    assert revoked["reason"] == f"lease closed: the process exited with status {code}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_death_by_signal_passes_through(kx: Kontext, sig: signal.Signals) -> None:
    name = kx.agent()
    proc = kx.run("exec", "--agent", name, "--", "sh", "-c", f"kill -{sig.name[3:]} $$")
    # The wrapper dies of the same signal, so a shell sees 128+N as it would for the child.
    assert proc.returncode == -sig, proc.stderr
    assert without_not_connected(proc.stderr) == ""
    (revoked,) = events_for(kx, name, "credential.revoked")
    assert revoked["reason"] == f"lease closed: the process killed by signal {int(sig)}"


def test_child_starts_with_default_signals_and_no_lease_socket(kx: Kontext) -> None:
    name = kx.agent()
    script = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        pass  # the directory listing's own descriptor
print(json.dumps({"blocked": status["SigBlk"].strip(), "fds": fds}))
"""
    proc = kx.ok("exec", "--agent", name, "--", PY, "-c", script)
    seen = json.loads(proc.stdout)
    # The wrapper blocks signals to relay them; its child must not inherit that mask.
    assert int(seen["blocked"], 16) == 0
    # The lease is the wrapper's socket: the child cannot hold it open (or talk on it).
    assert not [t for t in seen["fds"].values() if t.startswith("socket:")], seen["fds"]


def test_sigpipe_is_default_in_the_child(kx: Kontext) -> None:
    # Python ignores SIGPIPE; a child that inherited that would complain on stderr.
    name = kx.agent()
    proc = kx.run("exec", "--agent", name, "--", "sh", "-c", "yes | head -n 1")
    assert (proc.returncode, proc.stdout, without_not_connected(proc.stderr)) == (0, "y\n", "")


# -- streams -------------------------------------------------------------------


def test_stdin_to_stdout_is_byte_exact(kx: Kontext) -> None:
    name = kx.agent()
    # Every byte value, NULs, CR/LF, invalid UTF-8 and a size beyond any pipe buffer.
    data = bytes(range(256)) * 4096 + b"\r\n\x00\xff\xfe" + os.urandom(65536)
    proc = subprocess.run(
        [KONTEXT, "exec", "--agent", name, "--", "cat"],
        input=data,
        capture_output=True,
        env=kx.env,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data
    assert without_not_connected(proc.stderr.decode()) == ""


def test_stderr_passes_and_stays_separate(kx: Kontext) -> None:
    name = kx.agent()
    proc = kx.run("exec", "--agent", name, "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 7")
    assert (proc.returncode, proc.stdout, without_not_connected(proc.stderr)) == (
        7,
        "to-out\n",
        "to-err\n",
    )


# -- signals -------------------------------------------------------------------

TRAPPER = """
import signal, sys
def report(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
    if signum == signal.SIGTERM:
        sys.exit(42)
for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
    signal.signal(s, report)
print("ready", flush=True)
while True:
    signal.pause()
"""


def test_signals_sent_to_the_wrapper_reach_the_child(kx: Kontext) -> None:
    name = kx.agent()
    proc = kx.popen("exec", "--agent", name, "--", PY, "-c", TRAPPER)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
        for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR1):
            proc.send_signal(sig)  # to the wrapper's pid, not the child's
            assert proc.stdout.readline() == f"got {sig.name}\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        kx.close(proc)
    assert out == "got SIGTERM\n"
    assert proc.returncode == 42, err  # the child's own status after handling SIGTERM
    assert without_not_connected(err) == ""


def test_parallel_execs_get_their_own_credentials(kx: Kontext) -> None:
    name = kx.agent()
    show = "import os; print(os.environ['KONTEXT_CREDENTIAL_ID'])"
    procs = [kx.popen("exec", "-a", name, "--", PY, "-c", show) for _ in range(12)]
    outputs = [p.communicate(timeout=30) for p in procs]
    assert [p.returncode for p in procs] == [0] * 12, outputs
    jtis = {out.strip() for out, _ in outputs}
    assert len(jtis) == 12
    assert {e["jti"] for e in events_for(kx, name, "credential.revoked")} == jtis


def test_exec_starts_the_daemon_when_needed(fresh_kx: Kontext) -> None:
    name = fresh_kx.agent()
    fresh_kx.ok("daemon", "stop")
    proc = fresh_kx.run("exec", "-a", name, "--", "sh", "-c", "echo child-out; exit 5")
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == "child-out\n"  # kontext's notices stay off stdout
    assert "started kontextd" in proc.stderr


COUNT_INTERRUPTS = """
import signal, time
seen = []
signal.signal(signal.SIGINT, lambda *_: seen.append(1))
print("ready", flush=True)
while not seen:
    time.sleep(0.01)
time.sleep(0.5)  # time for a second, relayed copy to arrive
print(f"interrupts={len(seen)}", flush=True)
"""


def test_ctrl_c_on_a_terminal_reaches_the_child_once(kx: Kontext) -> None:
    """^C signals the whole foreground group; the wrapper must not relay a second copy."""
    import pty

    name = kx.agent()
    argv = [KONTEXT, "exec", "--agent", name, "--", PY, "-c", COUNT_INTERRUPTS]
    pid, master = pty.fork()  # the child gets a new session with the pty as its terminal
    if pid == 0:  # pragma: no cover - the forked child
        os.execve(KONTEXT, argv, kx.env)
    out = b""
    try:
        while b"ready" not in out:
            out += os.read(master, 1024)
        os.write(master, b"\x03")  # the terminal's interrupt character
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert b"interrupts=1" in out, out
    assert os.waitstatus_to_exitcode(status) == 0


# -- the command cannot run ------------------------------------------------------


def _no_live_credentials(kx: Kontext, name: str) -> None:
    issued = {e["jti"] for e in events_for(kx, name, "credential.issued")}
    ended = {e["jti"] for e in events_for(kx, name, "credential.revoked")}
    assert issued <= ended, "a credential outlived a command that never ran"


@pytest.mark.parametrize("command", ["no-such-command-kx", "/nonexistent/kx/cmd", "", "dangling"])
def test_command_not_found_is_127(kx: Kontext, tmp_path: Path, command: str) -> None:
    name = kx.agent()
    if command == "dangling":
        command = str(tmp_path / "dangling")
        os.symlink("/nonexistent/kx", command)
    proc = kx.run("exec", "--agent", name, "--", command, "arg")
    line = one_line_error(quiet(proc), 127)  # as a shell would say it, not "internal error"
    assert "command not found" in line and command in line
    _no_live_credentials(kx, name)


@pytest.mark.parametrize("kind", ["file", "directory", "not-a-program"])
def test_not_executable_is_126(kx: Kontext, tmp_path: Path, kind: str) -> None:
    name = kx.agent()
    target = tmp_path / "script"
    if kind == "file":
        target.write_text("#!/bin/sh\necho should-not-run\n")
        target.chmod(stat.S_IRUSR | stat.S_IWUSR)
    elif kind == "directory":
        target.mkdir()
    else:  # executable bit, but neither a binary nor a script with #!
        target.write_bytes(b"\x7fELF-not-really\x00\x01")
        target.chmod(0o700)
    proc = kx.run("exec", "--agent", name, "--", str(target))
    line = one_line_error(quiet(proc), 126)
    assert str(target) in line
    _no_live_credentials(kx, name)


# -- kontext's own failures ----------------------------------------------------------


def test_denied_is_122_with_the_layer_and_reason(kx: Kontext) -> None:
    name = kx.agent("github:pulls:read")
    proc = kx.run(
        "exec", "--agent", name, "--scope", "github:pulls:write", "--", "sh", "-c", "echo ran"
    )
    line = one_line_error(proc, 122)
    assert line == (
        f"kontext: denied by agent permissions: agent:{name} may not use github:pulls:write"
    )


def test_ttl_over_the_agent_cap_is_denied(kx: Kontext) -> None:
    name = kx.agent("github:pulls:read", extra=("--max-ttl", "5m"))
    line = one_line_error(kx.run("exec", "-a", name, "--ttl", "1h", "--", "true"), 122)
    assert "agent permissions" in line and "5m" in line


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--ttl", "5x", "invalid duration"),
        ("--ttl", "0s", "out of range"),
        ("--ttl", "9999999d", "duration"),
        ("--scope", "pulls", "invalid scope"),
        ("--scope", "GitHub:pulls:read", "invalid scope"),
        ("--scope", "github:pulls:delete", "unknown scope"),  # only the daemon knows
        ("--scope", "gitlab:pulls:read", "unknown integration"),  # only the daemon knows
        ("--target", "../x", "invalid target"),
        ("--target", "acme corp/backend", "invalid target"),
        ("--target", "acme/../../etc", "invalid target"),
        ("--target", "x" * 300, "invalid target"),
    ],
)
def test_bad_values_are_125_one_line(kx: Kontext, option: str, value: str, words: str) -> None:
    name = kx.agent("github:pulls:read")
    proc = kx.run("exec", "--agent", name, option, value, "--", "sh", "-c", "echo ran")
    line = one_line_error(proc, 125)
    assert words in line
    assert len(line) < 300  # a huge value is not echoed back whole
    assert events_for(kx, name, "credential.issued") == []


def test_bad_agent_name_is_125(kx: Kontext) -> None:
    line = one_line_error(kx.run("exec", "--agent", "Bad_Name", "--", "true"), 125)
    assert "invalid agent name" in line


# -- nesting and inherited credentials -------------------------------------------

SHOW_ENV = (
    "import json,os;print(json.dumps({k:v for k,v in os.environ.items()"
    " if k.startswith(('KONTEXT_','GITHUB_','GH_','SLACK_'))}))"
)


def test_nested_exec_under_another_agent_is_refused(kx: Kontext) -> None:
    outer, inner = kx.agent(), kx.agent()
    proc = kx.run(
        "exec", "-a", outer, "--", KONTEXT, "exec", "-a", inner, "--", "sh", "-c", "echo inner-ran"
    )
    assert proc.returncode == 122, proc.stderr  # the outer passes the inner's status on
    assert "inner-ran" not in proc.stdout
    lines = without_not_connected(proc.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("kontext: "), proc.stderr
    assert f"agent:{outer}" in lines[0] and "token" in lines[0]
    assert events_for(kx, inner, "credential.issued") == []


@pytest.mark.parametrize("same", [True, False], ids=["same-agent", "other-agent"])
def test_nested_exec_is_refused_by_the_daemon_without_the_variable(kx: Kontext, same: bool) -> None:
    """The variable is only a courtesy: without it kontextd still refuses, from the
    process tree, and audits the attempt. Delegation is token exchange only."""
    outer = kx.agent()
    inner = outer if same else kx.agent()
    nested = f"env -u KONTEXT_AGENT {KONTEXT} exec -a {inner} -- sh -c 'echo inner-ran'"
    proc = kx.run("exec", "-a", outer, "--no-confine", "--", "sh", "-c", nested)
    assert proc.returncode == 122, proc.stderr
    assert "inner-ran" not in proc.stdout
    assert f"inside agent:{outer}" in proc.stderr, proc.stderr
    assert len(events_for(kx, inner, "credential.issued")) == (1 if same else 0)
    (refused,) = events_for(kx, outer, "control.refused")
    assert refused["route"] == "POST /v1/credentials"


def test_inherited_credentials_are_replaced_or_stripped(kx: Kontext) -> None:
    slack_only = kx.agent("slack:chat:write")
    inherited = {
        "GITHUB_TOKEN": "ghp_inherited",
        "GH_TOKEN": "gh_inherited",
        "KONTEXT_TOKEN": "stale-kontext-token",
        "SLACK_TOKEN": "xoxb-inherited",
        "KONTEXT_CREDENTIAL_ID": "stale-jti",
        "UNRELATED": "kept",
    }
    proc = kx.ok(
        "exec",
        "-a",
        slack_only,
        "--",
        PY,
        "-c",
        "import json,os;print(json.dumps(dict(os.environ)))",
        env=inherited,
    )
    env = json.loads(proc.stdout)
    assert "GITHUB_TOKEN" not in env and "GH_TOKEN" not in env
    assert env["KONTEXT_TOKEN"] not in inherited.values()
    assert env["SLACK_TOKEN"] == env["KONTEXT_TOKEN"]
    assert env["KONTEXT_CREDENTIAL_ID"] != "stale-jti"
    assert env["UNRELATED"] == "kept"  # nothing else changes
    assert kx.introspect(env["KONTEXT_TOKEN"]) == {"active": False}  # it died with the child


# -- the fast path and the typer definition agree -------------------------------------

AGREEING_ARGV = [
    ["--agent=x", "--", "cmd"],
    ["-a", "x", "cmd"],
    ["--agent", "x", "--scope", "github:pulls:read", "--scope", "slack:chat:write", "--", "cmd"],
    ["-a", "x", "-s", "github:pulls:read", "--scope=slack:chat:write", "cmd", "arg"],
    ["-a", "x", "--ttl", "5m", "--", "cmd"],
    ["-a", "x", "--ttl=5m", "--target", "acme/backend", "--", "cmd"],
    ["-t", "acme/backend", "--target=acme/other", "--agent", "x", "cmd"],
    ["--agent", "x", "--agent", "y", "--", "cmd"],
    ["-a", "x", "cmd", "--agent", "y", "-s", "z", "--help"],
    ["-a", "x", "--", "cmd", "--", "--ttl", "1s"],
    ["-a", "x", "--", "--help"],
    ["-a", "x", "--", "-"],
    ["-a", "x", "-"],
    ["-a", "--", "--", "cmd"],
    ["--agent=", "--", "cmd"],
    ["-a", "x", "--ttl", "--", "cmd"],
]


def typer_request(argv: list[str]) -> ExecRequest:
    """What the typer definition of ``exec`` parses ``argv`` into, without running it."""
    import typer.main

    from kontext_cli.app import build

    command = typer.main.get_command(build()).commands["exec"]  # type: ignore[attr-defined]
    with command.make_context("exec", list(argv)) as ctx:
        p = ctx.params
    # The same mapping as kontext_cli.commands.exec_.exec_command.
    return ExecRequest(
        agent=p["agent"],
        command=list(p["command"]),
        scopes=list(p["scope"] or []),
        target=p["target"],
        ttl=p["ttl"],
        no_confine=p["no_confine"],
    )


@pytest.mark.parametrize("argv", AGREEING_ARGV, ids=" ".join)
def test_fast_path_and_typer_parse_alike(argv: list[str]) -> None:
    fast = parse_fast(list(argv))
    assert fast is not None, "the common case must take the fast path"
    assert fast == typer_request(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["-a", "x", "--help", "--", "cmd"],
        ["-a", "x"],
        ["-a"],
        ["--", "cmd"],
        ["--bogus", "-a", "x", "cmd"],
        ["-ax", "cmd"],
        ["-a=x", "cmd"],
        ["--no-confine=1", "cmd"],
        [],
    ],
    ids=lambda argv: " ".join(argv) or "(none)",
)
def test_unusual_argv_leaves_the_fast_path(argv: list[str]) -> None:
    # None means typer parses it, so its help and errors stay the only ones.
    assert parse_fast(list(argv)) is None


def test_exec_help_is_the_typer_help(kx: Kontext) -> None:
    proc = kx.ok("exec", "--help")
    assert proc.stdout.startswith("Usage: kontext exec")
    for option in ("--agent", "--scope", "--target", "--ttl", "--no-confine", "122", "127"):
        assert option in proc.stdout


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--", "true"], "Missing option '--agent'"),
        (["-a", "x"], "Missing argument"),
        (["--bogus", "-a", "x", "--", "true"], "No such option"),
        (["-a"], "requires an argument"),
    ],
)
def test_exec_usage_errors_are_125(kx: Kontext, argv: list[str], words: str) -> None:
    proc = kx.run("exec", *argv)
    assert proc.returncode == 125, proc.stderr
    assert proc.stdout == ""
    # One line: click's complaint, and where the help is.
    [line] = proc.stderr.splitlines()
    assert line.startswith("kontext: ") and words.lower() in line.lower()
    assert line.endswith("--help')")


def test_bare_exec_shows_help_and_fails(kx: Kontext) -> None:
    proc = kx.run("exec")
    assert proc.returncode == 125
    assert "--agent" in proc.stderr


# -- the fast path stays light --------------------------------------------------------

HEAVY = (
    "typer",
    "click",
    "rich",
    "httpx",
    "httpcore",
    "jwt",
    "cryptography",
    "keyring",
    "platformdirs",
    "kontextd",
    "sqlite3",
    "json",  # it imports re: the client uses _json directly (kontext_cli.wirejson)
)

PROBE = """
import atexit, sys
out, heavy, argv = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3:]
def record():
    loaded = sorted(m for m in list(sys.modules) if m.split(".")[0] in heavy)
    with open(out, "w") as fh:
        fh.write("\\n".join(loaded))
atexit.register(record)
sys.argv = ["kontext", *argv]
from kontext_cli.main import main
sys.exit(main())
"""


def loaded_modules(kx: Kontext, tmp_path: Path, *argv: str) -> tuple[int, set[str]]:
    out = tmp_path / "modules.txt"
    proc = subprocess.run(
        [PY, "-c", PROBE, str(out), ",".join(HEAVY), *argv],
        env=kx.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.returncode, set(out.read_text().split())


def test_exec_fast_path_imports_nothing_heavy(kx: Kontext, tmp_path: Path) -> None:
    name = kx.agent()
    code, modules = loaded_modules(
        kx,
        tmp_path,
        "exec",
        "--agent",
        name,
        "--scope",
        "github:pulls:read",
        "--ttl",
        "5m",
        "--",
        "sh",
        "-c",
        "exit 4",
    )
    assert code == 4  # it really ran the command
    assert modules == set()
    # The probe does see heavy imports when they happen (help goes through typer).
    code, modules = loaded_modules(kx, tmp_path, "exec", "--help")
    assert code == 0 and "typer" in modules
