"""Starting kontextd in the background.

The daemon's stderr is a pipe to us until it is ready; then it closes it. So:
read to EOF (with a deadline), relay any notices (e.g. the keyring fallback),
and report its error line if it died instead.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from kontext.common import wire
from kontext.common.paths import Paths
from kontext_cli import errors
from kontext_cli.spinner import INTERVAL, Spinner

START_TIMEOUT = 20.0
# kontextd's exit statuses are the CLI's own numbers: each becomes the same error.
BY_DAEMON_EXIT: dict[int, type[errors.KontextError]] = {
    wire.EXIT_CONFIG_INVALID: errors.ConfigInvalid,
    wire.EXIT_SECRETS: errors.SecretsUnavailable,
    wire.EXIT_FOREIGN: errors.Forbidden,
}
READY_PREFIX = "kontextd: ready"


def _read_until_closed(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT
    chunks: list[bytes] = []
    waiting = Spinner("starting kontextd")  # on a terminal only
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.DaemonUnavailable(
                    f"kontextd did not become ready within {START_TIMEOUT:.0f}s"
                )
            waiting.tick()
            ready, _, _ = select.select([proc.stderr], [], [], min(remaining, INTERVAL))
            if ready:
                chunk = os.read(proc.stderr.fileno(), 65536)
                if not chunk:
                    return b"".join(chunks).decode(errors="replace")
                chunks.append(chunk)
    finally:
        waiting.clear()


def start_background(paths: Paths, *, announce: bool = True, new_database: bool = False) -> int:
    """Start the daemon detached from this terminal; returns its pid once it serves.
    Only ``kontext daemon start --new-database`` passes ``new_database``."""
    extra = ["--new-database"] if new_database else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "kontextd", "--detach-stderr", *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # not killed with our terminal's process group
        close_fds=True,
        # A CI job's identity stays with the step that uses it (login --federate).
        env={k: v for k, v in os.environ.items() if k not in wire.CI_IDENTITY_ENV},
    )
    output = _read_until_closed(proc)
    lines = [line for line in output.splitlines() if line.strip()]
    if not any(line.startswith(READY_PREFIX) for line in lines):
        code = proc.wait(timeout=5)
        message = lines[-1].removeprefix("kontextd: ") if lines else f"exited with status {code}"
        if code == wire.EXIT_ALREADY_RUNNING:
            return proc.pid  # another command started it a moment ago: use that one
        error = BY_DAEMON_EXIT.get(code, errors.DaemonUnavailable)
        raise error(f"kontextd could not start: {message}")
    if announce:
        print(f"kontext: started kontextd in the background (pid {proc.pid})", file=sys.stderr)
        for line in lines:
            if not line.startswith(READY_PREFIX):
                print(f"kontext: {line.removeprefix('kontextd: ')}", file=sys.stderr)
    return proc.pid
