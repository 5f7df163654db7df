"""1. exec overhead: ``kontext exec`` against ``true`` and ``python3 -c pass``, interleaved."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import (
    AGENT,
    HERE,
    KONTEXT,
    TRUE,
    Daemon,
    Plan,
    Section,
    ms,
    nothing,
    percentile,
    timed_run,
)


@contextmanager
def regular_install() -> Iterator[Path | None]:
    """A throwaway venv with kontext installed as users install it (a wheel, not
    editable: no import hook), or None if it cannot be built here."""
    with tempfile.TemporaryDirectory(prefix="kb-venv-") as where:
        venv = Path(where)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            # The exec path imports no third-party module, so no dependencies are needed.
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(HERE.parent)],
                check=True,
                timeout=600,
                capture_output=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"no regular install for the exec benchmark: {exc}", file=sys.stderr)
            yield None
            return
        yield venv / "bin"


EXEC_ARGS = ("exec", "--agent", AGENT, "--", TRUE)
UNCONFINED_ARGS = ("exec", "--agent", AGENT, "--no-confine", "--", TRUE)


def bench_exec(daemon: Daemon, plan: Plan) -> tuple[Section, dict[str, list[float]]]:
    commands = {
        "`true`": [TRUE],
        "`python3 -c pass`": [sys.executable, "-c", "pass"],
        "`kontext exec --agent a -- true`": [KONTEXT, *EXEC_ARGS],
        "`kontext exec --agent a --no-confine -- true`": [KONTEXT, *UNCONFINED_ARGS],
    }
    baseline_of = {name: "`python3 -c pass`" for name in commands}
    with regular_install() if plan.regular_install else nothing() as bin_dir:
        if bin_dir is not None:
            commands["`python3 -c pass`, regular install's venv"] = [
                str(bin_dir / "python"),
                "-c",
                "pass",
            ]
            commands["`kontext exec --agent a -- true`, regular install"] = [
                str(bin_dir / "kontext"),
                *EXEC_ARGS,
            ]
            commands["`kontext exec --agent a --no-confine -- true`, regular install"] = [
                str(bin_dir / "kontext"),
                *UNCONFINED_ARGS,
            ]
            for name in list(commands)[-3:]:
                baseline_of[name] = "`python3 -c pass`, regular install's venv"
        times = _time_interleaved(commands, daemon.env, plan.exec_runs)
    section = Section(
        "1. exec overhead (daemon warm)",
        ("command", "runs", "median", "p95", "median / python3 -c pass (same venv)"),
    )
    for name, values in times.items():
        median = statistics.median(values)
        section.rows.append(
            (
                name,
                str(len(values)),
                ms(median),
                ms(percentile(values, 95)),
                f"{median / statistics.median(times[baseline_of[name]]):.2f}x",
            )
        )
    section.notes.append(
        "Each run is a fresh process started with subprocess.run from this script; each "
        "`kontext` is compared with `python3 -c pass` run by its own venv's interpreter. "
        "The first venv is the one running this script (an editable install in CI and "
        "development, whose import hook slows every start, the floor included); the "
        "second is built for this run from a wheel, as pipx or pip install it. "
        "`kontext exec` confines its child by default (Linux, where the kernel allows: "
        "README, Confinement); `--no-confine` is the same exec without it."
    )
    return section, times


def _time_interleaved(
    commands: dict[str, list[str]], env: dict[str, str], runs: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # warm the page cache and the daemon
        timed_run(argv, env)
    for _ in range(runs):
        for name, argv in commands.items():  # interleaved: drift hits all alike
            times[name].append(timed_run(argv, env))
    return times
