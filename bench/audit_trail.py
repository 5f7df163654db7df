"""6. The audit trail at 1,000,000 events: tail and verify."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from common import KONTEXT, Daemon, Plan, Section, fresh_home, ms, percentile, timed_run


def timed_on_tty(argv: list[str], env: dict[str, str]) -> float:
    """Like ``timed_run``, with stdout a pseudo-terminal (as for a person at a shell)."""
    import pty

    master, slave = pty.openpty()
    drained = threading.Thread(target=_drain, args=(master,), daemon=True)
    drained.start()
    try:
        began = time.perf_counter()
        proc = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE
        )
        elapsed = time.perf_counter() - began
    finally:
        os.close(slave)
        drained.join(timeout=5)
        os.close(master)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv}: exit {proc.returncode}: {proc.stderr.decode()[-300:]}")
    return elapsed


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass


@dataclass
class AuditFigures:
    verify: list[float]
    tail_pipe: list[float]
    tail_tty: list[float]

    @property
    def tail(self) -> float:
        """The slower median of the two ways a user runs ``audit tail``."""
        return max(statistics.median(self.tail_pipe), statistics.median(self.tail_tty))


def bench_audit(plan: Plan) -> tuple[Section, AuditFigures]:
    """Fill a store through ``append_event`` (bench/audit_bench.py), then time the CLI."""
    import audit_bench

    with fresh_home() as home:
        saved = os.environ.get("KONTEXT_HOME")
        os.environ["KONTEXT_HOME"] = str(home)
        try:
            rate = audit_bench.fill(plan.audit_events, 10_000, 1000)
        finally:
            if saved is None:
                os.environ.pop("KONTEXT_HOME", None)
            else:
                os.environ["KONTEXT_HOME"] = saved
        daemon = Daemon(home)
        daemon.start()
        tail = [KONTEXT, "audit", "tail", "-n", "100"]
        times: dict[str, list[float]] = {"pipe": [], "tty": [], "python": [], "verify": []}
        try:
            for _ in range(plan.audit_runs):  # interleaved: drift hits all alike
                times["python"].append(timed_run([sys.executable, "-c", "pass"], daemon.env))
                times["pipe"].append(timed_run(tail, daemon.env))
                times["tty"].append(timed_on_tty(tail, daemon.env))
            for _ in range(plan.audit_runs):
                times["verify"].append(timed_run([KONTEXT, "audit", "verify"], daemon.env))
        finally:
            daemon.stop()
    section = Section(
        f"6. Audit trail at {plan.audit_events:,} events",
        ("measure", "runs", "median", "p95", "baseline"),
    )
    python = statistics.median(times["python"])
    section.rows.append(
        (
            "append (the store's append_event, transactions of 10,000)",
            "1",
            f"{rate:,.0f} events/s",
            "-",
            "-",
        )
    )
    for name, key in (
        ("`kontext audit tail -n 100`, stdout a pipe", "pipe"),
        ("`kontext audit tail -n 100`, stdout a terminal (pty)", "tty"),
    ):
        median = statistics.median(times[key])
        section.rows.append(
            (
                name,
                str(len(times[key])),
                ms(median),
                ms(percentile(times[key], 95)),
                f"{median / python:.2f}x python3 -c pass ({ms(python)})",
            )
        )
    section.rows.append(
        (
            "`kontext audit verify`",
            str(len(times["verify"])),
            f"{statistics.median(times['verify']):.2f} s",
            f"{percentile(times['verify'], 95):.2f} s",
            f"{plan.audit_events / statistics.median(times['verify']):,.0f} events/s",
        )
    )
    section.notes.append(
        "Events are appended through the daemon's own Store.append_event (canonical JSON, "
        "SHA-256 link, INSERT) with a signed checkpoint every 1,000, then a daemon is started "
        "on that home and the CLI is timed as a whole process."
    )
    return section, AuditFigures(times["verify"], times["pipe"], times["tty"])
