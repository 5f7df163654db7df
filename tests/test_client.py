"""The CLI's side of the control socket: whose socket it speaks to, and how long it waits.

Another OS user who got to a runtime directory first, or who serves a socket
where ours should be, must never receive a request (a request can carry an
upstream secret); a daemon that is stopped (SIGSTOP) or wedged must be one line,
never a hang. Each test runs the real CLI; "another user" is uid ``OTHER`` via
setpriv (nobody else on this machine uses it) or root serving a socket to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    KONTEXT,
    KONTEXTD,
    Kontext,
    one_line_error,
    short_home,
    wait_until,
    without_not_connected,
)
from hypothesis import given
from hypothesis import strategies as st

from kontext_cli import wirejson

OTHER = 64999  # an unused uid: its /tmp/runtime-UID is ours to stage
AS_OTHER = ["setpriv", f"--reuid={OTHER}", f"--regid={OTHER}", "--clear-groups"]
pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="setpriv to another uid needs root")


def _as_other(
    *args: str, env: dict[str, str], input: str | None = None, program: str = KONTEXT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_OTHER, program, *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def other_home() -> Iterator[Path]:
    """A HOME of uid OTHER's own."""
    home = Path(short_home())
    os.chown(home, OTHER, OTHER)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_a_runtime_dir_another_user_made_first_is_one_line_everywhere(other_home: Path) -> None:
    # No XDG_RUNTIME_DIR: platformdirs falls back to /tmp/runtime-UID — which root made first.
    runtime = Path(f"/tmp/runtime-{OTHER}")
    shutil.rmtree(runtime, ignore_errors=True)
    runtime.mkdir(mode=0o700)
    env = {"HOME": str(other_home), "PATH": os.environ["PATH"], "NO_COLOR": "1"}
    try:
        for args, code in ((("agent", "list"), 9), (("exec", "--agent", "a", "--", "true"), 125)):
            line = one_line_error(_as_other(*args, env=env), code)
            assert f"/tmp/runtime-{OTHER} is owned by uid 0" in line, line
            assert "set XDG_RUNTIME_DIR (or KONTEXT_HOME) to a directory of your own" in line
        doctor = _as_other("doctor", env=env)
        assert doctor.returncode == 12, doctor.stderr
        assert doctor.stdout.startswith("fail  paths") and "Traceback" not in doctor.stderr
        assert doctor.stderr == "kontext: 1 of 1 checks failed: paths\n"
        daemon = _as_other(env=env, program=KONTEXTD)
        assert daemon.returncode == 9 and daemon.stderr.count("\n") == 1, daemon.stderr
        assert list(runtime.iterdir()) == []  # nothing was created in it
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


class FakeDaemon:
    """root serving a Unix socket where uid OTHER's daemon belongs; records what it hears."""

    def __init__(self, path: Path) -> None:
        self.heard = b""
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    while chunk := conn.recv(65536):
                        self.heard += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_a_socket_served_by_another_uid_is_never_spoken_to(other_home: Path) -> None:
    home = other_home / "kx"
    (home / "run").mkdir(parents=True, mode=0o700)
    for path in (home, home / "run"):
        os.chown(path, OTHER, OTHER)
    sock = home / "run" / "control.sock"
    fake = FakeDaemon(sock)  # bound by root: the socket file is root's
    env = {"KONTEXT_HOME": str(home), "PATH": os.environ["PATH"], "NO_COLOR": "1"}
    connect = ("integration", "connect", "github", "--secret-stdin")
    try:
        line = one_line_error(_as_other(*connect, env=env, input="ghp_secret\n"), 9)
        assert f"{sock} belongs to uid 0, not you (uid {OTHER})" in line
        # The file handed to OTHER, the server still root's: the kernel's word decides.
        os.chown(sock, OTHER, OTHER)
        for args, code in (
            (connect, 9),
            (("agent", "list"), 9),
            (("exec", "-a", "a", "true"), 125),
        ):
            line = one_line_error(_as_other(*args, env=env, input="ghp_secret\n"), code)
            assert f"{sock} is served by uid 0 (pid {os.getpid()}), not you" in line, line
    finally:
        fake.close()
    assert fake.heard == b""  # not one byte — above all not the secret


def test_a_stopped_daemon_is_one_line_not_a_hang(fresh_kx: Kontext) -> None:
    k = fresh_kx
    agent = k.agent("github:pulls:read")
    pid = k.daemon_pid
    env = {"KONTEXT_DAEMON_TIMEOUT": "2"}
    os.kill(pid, signal.SIGSTOP)
    try:
        for args, code in (
            (("daemon", "status"), 5),
            (("agent", "list"), 5),
            (("exec", "--agent", agent, "--", "true"), 125),
            (("daemon", "stop"), 5),
        ):
            line = one_line_error(k.run(*args, env=env, timeout=60), code)
            assert f"kontext: kontextd (pid {pid}) did not answer within 2s" in line, line
            assert f"kill -CONT {pid}" in line
    finally:
        os.kill(pid, signal.SIGCONT)
    # Resumed, it serves again.
    assert wait_until(lambda: k.run("daemon", "status").returncode == 0, timeout=30)


def test_a_deadline_never_cuts_an_exec_whose_command_runs_longer(kx: Kontext) -> None:
    agent = kx.agent("github:pulls:read")
    proc = kx.run(
        "exec", "--agent", agent, "--", "sh", "-c", "sleep 3; exit 7",
        env={"KONTEXT_DAEMON_TIMEOUT": "1"},
    )  # fmt: skip
    assert proc.returncode == 7 and without_not_connected(proc.stderr) == "", proc.stderr


def test_a_bad_daemon_timeout_is_a_usage_error(kx: Kontext) -> None:
    line = one_line_error(kx.run("agent", "list", env={"KONTEXT_DAEMON_TIMEOUT": "soon"}), 2)
    assert "KONTEXT_DAEMON_TIMEOUT must be a number of seconds" in line


# -- wirejson: json's own C scanner and encoder, without importing json (and re) -----------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_wirejson_reads_and_writes_what_json_does(value: object) -> None:
    import json

    written = wirejson.dumps(value)
    assert json.loads(written) == value
    assert wirejson.loads(written.encode()) == value
    assert wirejson.loads(json.dumps(value, indent=2)) == value


def test_wirejson_writes_no_infinity_or_nan() -> None:
    for value in (float("inf"), float("nan")):
        with pytest.raises(ValueError):
            wirejson.dumps({"x": value})


@pytest.mark.parametrize("raw", [b"", b"{", b"{} {}", b"NaN", b"[1,]", b"\xff", b"'x'"])
def test_wirejson_refuses_what_is_not_one_json_value(raw: bytes) -> None:
    with pytest.raises(ValueError):
        wirejson.loads(raw)
