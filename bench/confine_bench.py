"""What each way of confining ``kontext exec``'s child costs (bench/FINDINGS.md).

Run: ``python bench/confine_bench.py [--runs N]`` (Linux with Landlock ABI >= 6 and
user namespaces). Prints a markdown table; every figure is a median over N runs,
interleaved, with ``python3 -c pass`` timed in the same run as the baseline.

1. Start-up: ``python3 -c pass`` vs importing ``ctypes``, ``_ctypes`` and
   kontext's ``_ctypes`` shim (``kontext_cli.linux``).
2. Starting ``true`` from a Python process the size of the exec wrapper:
   ``posix_spawn`` (the unconfined path) vs ``fork`` + ``execve`` vs ``fork`` +
   kontext's confinement (``confine.hide`` + ``confine.seal``) + ``execve``, with
   the child's own timing of each step.
3. bubblewrap doing the hiding instead (``bwrap --unshare-user --tmpfs ...``),
   which still leaves Landlock's scoping to be done by us.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from kontext.common.paths import Paths
from kontext_cli import confine, execrun, linux  # noqa: F401 - the wrapper's size

TRUE = shutil.which("true") or "/bin/true"


def timed(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return time.perf_counter() - began


def interleaved(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():
        timed(argv)
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(timed(argv))
    return {name: statistics.median(values) for name, values in times.items()}


def spawned(plan: confine.Plan | None, mode: str) -> float:
    """Start ``true`` and wait for it, the way ``mode`` says; seconds."""
    began = time.perf_counter()
    if mode == "posix_spawn":
        pid = os.posix_spawn(TRUE, [TRUE], os.environ)
    else:
        pid = os.fork()
        if pid == 0:
            try:
                if plan is not None:
                    confine.hide(plan)
                    confine.seal(plan, False)
                os.execv(TRUE, [TRUE])
            finally:
                os._exit(127)
    os.waitpid(pid, 0)
    return time.perf_counter() - began


def steps(plan: confine.Plan) -> list[float]:
    """The child's own clock around each step of the confinement."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        marks = [time.perf_counter()]
        confine._own_namespaces(plan.uid, os.getgid())
        marks.append(time.perf_counter())
        for path in plan.hide:
            linux.mount("none", path, "tmpfs", confine.HIDE_FLAGS, confine.HIDE_OPTIONS)
        marks.append(time.perf_counter())
        confine.seal(plan, False)
        marks.append(time.perf_counter())
        os.write(write, " ".join(f"{b - a}" for a, b in itertools.pairwise(marks)).encode())
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1000).decode().split()
    os.waitpid(pid, 0)
    return [float(x) for x in answer]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    home = tempfile.mkdtemp(prefix="kb-confine-")
    where = Paths(*(os.path.join(home, d) for d in ("config", "data", "run", "log")))
    plan = confine.Plan(where, {})
    py = sys.executable
    rows: list[tuple[str, str, str]] = []
    starts = interleaved(
        {
            "python3 -c pass": [py, "-c", "pass"],
            "import ctypes": [py, "-c", "import ctypes"],
            "import _ctypes": [py, "-c", "import _ctypes"],
            "import kontext_cli.linux (the shim)": [py, "-c", "import kontext_cli.linux"],
        },
        runs // 4,
    )
    base = starts["python3 -c pass"]
    for name, value in starts.items():
        rows.append((name, f"{value * 1000:.2f} ms", f"+{(value - base) * 1000:.2f} ms"))
    for mode, with_plan in (("posix_spawn", None), ("fork", None), ("fork + confine", plan)):
        values = [spawned(with_plan, mode) for _ in range(runs)]
        rows.append((f"start `true` by {mode}", f"{statistics.median(values) * 1000:.3f} ms", ""))
    parts = [steps(plan) for _ in range(runs // 2)]
    for i, label in enumerate(("user + mount namespace", "4 tmpfs mounts", "seal (Landlock etc.)")):
        value = statistics.median(p[i] for p in parts)
        rows.append((f"in the child: {label}", f"{value * 1000:.3f} ms", ""))
    bwrap = shutil.which("bwrap")
    if bwrap:
        hide = [arg for d in plan.hide for arg in ("--tmpfs", d)]
        argv = [bwrap, "--unshare-user", "--dev-bind", "/", "/", *hide, "--", TRUE]
        times = interleaved({"true": [TRUE], "bwrap": argv}, runs // 4)
        rows.append(("`true` directly", f"{times['true'] * 1000:.2f} ms", ""))
        rows.append(
            (
                "`bwrap --unshare-user --tmpfs x4 -- true`",
                f"{times['bwrap'] * 1000:.2f} ms",
                f"+{(times['bwrap'] - times['true']) * 1000:.2f} ms",
            )
        )
    shutil.rmtree(home, ignore_errors=True)
    print("| what | median | vs baseline |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {' | '.join(row)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
