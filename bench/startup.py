"""5. Cold start, the python floor and the machine description."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time

from common import HERE, Daemon, Plan, fresh_home, timed_run


def bench_cold_start(plan: Plan) -> tuple[list[float], float, list[float]]:
    """(first starts in a new home, their idle RSS, restarts of an existing home)."""
    first: list[float] = []
    again: list[float] = []
    rss: list[float] = []
    for _ in range(plan.cold_starts):
        with fresh_home() as home:
            daemon = Daemon(home)
            first.append(daemon.start())
            time.sleep(0.3)
            rss.append(daemon.rss_mb())
            daemon.stop()
            again.append(daemon.start())
            daemon.stop()
    return first, statistics.median(rss), again


def python_floor() -> float:
    """Median time for the interpreter to start and import nothing (for scale)."""
    runs = [timed_run([sys.executable, "-c", "pass"], dict(os.environ)) for _ in range(15)]
    return statistics.median(runs)


def machine() -> list[str]:
    model = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    from kontext import __version__

    return [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {model}, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({sys.executable})",
        "- load average when the run ended: {:.2f} {:.2f} {:.2f} (other work on the machine "
        "skews every figure; compare ratios within one run)".format(*os.getloadavg()),
        f"- kontext {__version__}" + (f", commit {commit}" if commit else ""),
    ]
