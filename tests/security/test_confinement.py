"""Attacker 3, the agent, against the first wall: confinement (SECURITY.md, attacker 3).

Each test starts a real agent under ``kontext exec`` whose command is
``agent_side.py``: it unsets every ``KONTEXT_*`` variable, gets away from the
process exec started (``sh -c``, ``setsid -f``, a double fork) and tries each
attack, reporting what it got. From outside we then check that nothing changed:
no credential for another agent, no agent created or re-enabled, no grant or
credential revoked, no key rotated, no file read or written, the daemon the
same process, the audit chain intact.

Confinement (the default, ``exec.confine = "auto"``) hides kontext's files, the
control socket and the session bus and keeps signals and ptrace inside the
agent's tree. These tests need Landlock ABI >= 6 and unprivileged user
namespaces: CI has both; a kernel without them skips with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.confinement_harness import (
    AGENT_SIDE,
    KONTEXT,
    PY,
    VIAS,
    Kontext,
    Setup,
    assert_nothing_changed,
    assert_refused,
    daemon_with_agents,
    needs_confinement,
    short_home,
    state,
)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with daemon_with_agents() as agents:
        yield agents


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
    assert all(d.startswith(("16 ", "122 ")) for d in cli_tries.values()), cli_tries
    assert "confinement" in cli_tries["cli: agent create"]
    assert_nothing_changed(setup, before)


@needs_confinement
@pytest.mark.parametrize("via", VIAS)
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
    assert any(name.startswith("read fallback secret") for name in names), names
    assert not (setup.k.home / "config" / "policy.d" / "evil.cedar").exists()
    assert setup.k.daemon_pid == daemon
    assert_nothing_changed(setup, before)


@needs_confinement
@pytest.mark.parametrize("via", VIAS)
def test_a_confined_agent_cannot_undo_its_mounts(setup: Setup, tmp_path: Path, via: str) -> None:
    before = state(setup.k, setup.other)
    proc, results = setup.attack(tmp_path, ["mounts"], via=via)
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


# The agent types into its terminal's input queue (TIOCSTI; TIOCLINUX's paste on a
# console): whatever reads the terminal next — the user's own shell, once exec returns
# — runs it, outside every agent. The cmd's high 32 bits set (CVE-2019-10063's trick:
# the tty layer reads an unsigned int) must not get past the filter either.
TYPE_INTO_THE_TERMINAL = textwrap.dedent(
    """
    import fcntl, os, sys, termios
    for cmd in (termios.TIOCSTI, termios.TIOCSTI | (1 << 32)):
        for via in sys.argv[1:]:
            fd = os.open(via, os.O_RDWR | os.O_NOCTTY) if via != "0" else 0
            try:
                for ch in b"echo PWNED\\n":
                    fcntl.ioctl(fd, cmd, bytes([ch]))
                print("TYPED", hex(cmd), via, flush=True)
            except OSError as exc:
                print("REFUSED", hex(cmd), via, exc.errno, flush=True)
    """
)


def _in_a_terminal(argv: list[str], env: dict[str, str], answer: bytes) -> bytes:
    """Run ``argv`` on a new terminal; once it prints EXEC-DONE, type ``answer``."""
    import pty

    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the forked child
        os.execve(argv[0], argv, env)
    out, answered = b"", False
    try:
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"EXEC-DONE" in out:
                os.write(master, answer)
                answered = True
    finally:
        os.waitpid(pid, 0)
        os.close(master)
    return out


@needs_confinement
@pytest.mark.parametrize("via", ["direct", "sh"])
def test_a_confined_agent_cannot_type_into_the_users_terminal(setup: Setup, via: str) -> None:
    """The outer shell plays the user's: it reads the first line typed after exec."""
    inject = [PY, "-c", TYPE_INTO_THE_TERMINAL, "0", "/dev/tty"]
    if via == "sh":
        inject = ["sh", "-c", 'exec "$@"', "sh", *inject]
    exec_line = " ".join(
        [KONTEXT, "exec", "--agent", setup.agent, "--", *(f"'{a}'" for a in inject)]
    )
    script = f'{exec_line}; echo EXEC-DONE; read line; echo "GOT:[$line]"'
    out = _in_a_terminal(["/bin/sh", "-c", script], setup.k.env, b"clean\n")
    assert b"GOT:[clean]" in out, out
    assert b"TYPED" not in out and out.count(b"REFUSED") == 4, out


# -- the session bus (the Secret Service) ---------------------------------------------------

BUS_DRIVER = textwrap.dedent(
    """
    import json, os, pty, subprocess, sys
    out = subprocess.run(
        ["gnome-keyring-daemon", "--unlock", "--components=secrets", "--daemonize"],
        input=b"test-password\\n", capture_output=True, timeout=30,
    )
    for line in out.stdout.decode().splitlines():
        name, _, value = line.partition("=")
        if name:
            os.environ[name] = value
    kontext, home, agent_side, tmp = sys.argv[1:5]
    vias = sys.argv[5:]
    env = {**os.environ, "KONTEXT_HOME": home}

    def run(*args, tty=False):
        # consent grant opens the (stand-in) browser only for a person at a terminal
        primary, secondary = pty.openpty() if tty else (None, None)
        try:
            return subprocess.run([kontext, *args], env=env, capture_output=True, text=True,
                                  timeout=300, stdin=secondary)
        finally:
            for fd in (primary, secondary):
                if fd is not None:
                    os.close(fd)

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
        run("consent", "grant", "agent:" + agent, "--scope", "github:pulls:read", "--for", "1d",
            tty=True)
    runs = [("hidden", via) for via in vias] + [("allowed", "direct")]
    for name, via in runs:
        agent = "bus-" + name
        spec = {"groups": ["bus"], "bus_addresses": [os.environ["DBUS_SESSION_BUS_ADDRESS"]],
                "keyring_lookup": lookup}
        spec_path = os.path.join(tmp, name + via + ".json")
        with open(spec_path, "w") as fh:
            json.dump({**spec, "wrapper_pid": 0}, fh)
        out = os.path.join(tmp, name + via + ".out")
        proc = run("exec", "--agent", agent, "--ttl", "1m", "--", sys.executable, agent_side,
                   via, out, spec_path)
        found = json.load(open(out))["results"] if os.path.exists(out) else None
        results[name + ":" + via] = {"code": proc.returncode, "err": proc.stderr,
                                     "results": found}
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
    # Not CI either: consent grant answers at a terminal only where a person could be.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KONTEXT_", "DBUS_", "PYTHON_K")) and k != "CI"
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
                *VIAS,
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
    for via in VIAS:  # the lookup from the child, after sh -c, setsid -f, a double fork
        hidden = result[f"hidden:{via}"]
        assert hidden["results"] is not None, hidden
        assert_refused(hidden["results"], 2)
        assert "Secret Service lookup" in {r["name"] for r in hidden["results"]}, hidden
    allowed = result["allowed:direct"]
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


@needs_confinement
def test_the_default_home_is_hidden_too(setup: Setup, tmp_path: Path) -> None:
    """With KONTEXT_HOME set, the default home (another daemon's keys, perhaps) is
    hidden as well: XDG_DATA_HOME/kontext here, with a stand-in key in it."""
    data = tmp_path / "xdg-data"
    (data / "kontext" / "secrets").mkdir(parents=True)
    (data / "kontext" / "secrets" / "signing-key").write_text("PRIVATE KEY")
    proc = setup.k.run(
        "exec",
        "--agent",
        setup.agent,
        "--",
        "sh",
        "-c",
        f"cat {data}/kontext/secrets/signing-key; ls -A {data}/kontext; echo done",
        env={"XDG_DATA_HOME": str(data)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n" and "PRIVATE KEY" not in proc.stdout


# -- other programs of yours that run commands on request -----------------------------------

DRIVE_TMUX = textwrap.dedent(
    """
    set -u
    try() {
        printf '%s: ' "$1"; shift
        if "$@" >/dev/null 2>&1; then echo REACHED; else echo refused; fi
    }
    try 'new-window ($TMUX)' tmux new-window "touch $MARKER"
    try 'send-keys ($TMUX)' tmux send-keys -t user "touch $MARKER" Enter
    try 'new-window (-S)' tmux -S "$SOCKET" new-window "touch $MARKER"
    try 'new-window (TMUX unset)' env -u TMUX tmux new-window -t user "touch $MARKER"
    try 'list-sessions (TMUX unset)' env -u TMUX tmux list-sessions
    try 'own server' env -u TMUX tmux new-session -d -s mine 'sleep 30'
    env -u TMUX tmux kill-server 2>/dev/null
    echo done
    """
)


@needs_confinement
@pytest.mark.parametrize("where", ["default", "-S"])
def test_a_confined_agent_cannot_drive_the_users_tmux(
    setup: Setup, tmp_path: Path, where: str
) -> None:
    """Run inside your tmux (``$TMUX`` set, as tmux sets it), an agent that reached the
    server could run a command in a new window or type into your pane: as you, outside
    its tree and its confinement. It keeps a tmux server of its own."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (Debian: tmux)")
    tmpdir = tmp_path / "tmux-tmpdir"
    tmpdir.mkdir(mode=0o700)
    env = {**setup.k.env, "TMUX_TMPDIR": str(tmpdir)}
    env.pop("TMUX", None)
    user = ["tmux"] if where == "default" else ["tmux", "-S", str(tmp_path / "user.sock")]
    subprocess.run([*user, "new-session", "-d", "-s", "user", "sleep 600"], env=env, check=True)
    try:
        socket_path = subprocess.run(
            [*user, "display-message", "-p", "#{socket_path},#{pid},0"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        marker = tmp_path / "ran-outside"
        proc = setup.k.run(
            "exec",
            "--agent",
            setup.agent,
            "--",
            "sh",
            "-c",
            DRIVE_TMUX,
            env={
                "TMUX_TMPDIR": str(tmpdir),
                "TMUX": socket_path,
                "SOCKET": socket_path.split(",")[0],
                "MARKER": str(marker),
            },
        )
        windows, sessions = (
            subprocess.run([*user, *args], env=env, capture_output=True, text=True).stdout
            for args in (["list-windows", "-t", "user"], ["list-sessions", "-F", "#S"])
        )
    finally:
        subprocess.run([*user, "kill-server"], env=env, capture_output=True)
    assert proc.returncode == 0 and proc.stdout.endswith("done\n"), proc.stdout + proc.stderr
    reached = [line for line in proc.stdout.splitlines() if line.endswith("REACHED")]
    assert reached == ["own server: REACHED"], proc.stdout
    assert len(windows.splitlines()) == 1, windows  # no window the agent opened
    assert sessions == "user\n", sessions  # its own server was its own
    assert not marker.exists()


@needs_confinement
def test_the_systemd_user_managers_socket_is_out_of_reach(setup: Setup, tmp_path: Path) -> None:
    """``systemd-run --user CMD`` asks the user manager on ``$XDG_RUNTIME_DIR/systemd/
    private`` (when the bus is hidden) to start CMD — outside the agent's tree and its
    confinement. No systemd user manager runs in CI (systemd is not PID 1 there), so a
    listener stands in for it at that path: outside, it is reached; inside, not."""
    runtime = tmp_path / "xdg-runtime"
    (runtime / "systemd").mkdir(parents=True, mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(runtime / "systemd" / "private"))
    listener.listen(4)
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect(sys.argv[1]); print('REACHED')\n"
        "except OSError as exc:\n"
        "    print('refused', type(exc).__name__)\n"
    )
    private = str(runtime / "systemd" / "private")
    try:
        outside = subprocess.run([PY, "-c", probe, private], capture_output=True, text=True)
        proc = setup.k.run(
            "exec",
            "--agent",
            setup.agent,
            "--",
            PY,
            "-c",
            probe,
            private,
            env={"XDG_RUNTIME_DIR": str(runtime)},
        )
    finally:
        listener.close()
    assert outside.stdout == "REACHED\n", outside.stderr
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("refused"), proc.stdout


@needs_confinement
@pytest.mark.parametrize("via", ["direct", "setsid"])
def test_a_confined_agent_cannot_move_kontexts_home_aside(
    setup: Setup, tmp_path: Path, via: str
) -> None:
    """Hidden directories cannot be read, but their parents are the user's: renamed,
    ``KONTEXT_HOME`` (or ``~/.config``) would leave kontext's path free for a config,
    a ``policy.d`` and a control socket of the agent's own — the next ``kontext``
    command would use them. Tried by path and from a working directory above, for
    ``KONTEXT_HOME``, a directory in it, and the default home's parent."""
    home = setup.k.home
    data = tmp_path / "xdg-data"
    (data / "kontext").mkdir(parents=True)
    moves = [
        (str(home), f"{home}.moved"),
        (f"{home}/config", f"{home}/config.moved"),
        (str(data), f"{data}.moved"),
    ]
    script = (
        "".join(
            f"cd {os.path.dirname(src)} && mv {os.path.basename(src)} {os.path.basename(dst)}"
            f" && echo MOVED {src}; mv {src} {dst} && echo MOVED {src}; "
            for src, dst in moves
        )
        + f"mkdir -p {home}/config/policy.d && echo WROTE; echo done"
    )
    argv = ["sh", "-c", script]
    if via == "setsid":
        out = tmp_path / "out.txt"
        wait = f"until grep -q done {out}; do sleep 0.1; done"  # the run's timeout guards it
        argv = ["sh", "-c", f'setsid -f sh -c "$0" > {out} 2>&1; {wait}; cat {out}', script]
    before = state(setup.k, setup.other)
    try:
        proc = setup.k.run(
            "exec", "--agent", setup.agent, "--", *argv, env={"XDG_DATA_HOME": str(data)}
        )
    finally:
        for src, dst in moves:  # put back what an escape moved, for the other tests
            if os.path.exists(dst) and not os.path.exists(src):
                os.rename(dst, src)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stdout + proc.stderr
    assert "MOVED" not in proc.stdout and "WROTE" not in proc.stdout, proc.stdout
    assert sorted(os.listdir(home)) == ["config", "data", "log", "run"]
    assert_nothing_changed(setup, before)
