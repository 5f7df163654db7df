"""The ``kontext exec`` wrapper as its tree's reaper (Linux).

The wrapper makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process
its command leaves behind — double-forked, ``setsid``, a daemonised server — is
reparented to the wrapper instead of to init. So the whole tree stays below the
wrapper, where kontextd recognises it from ``/proc`` ancestry (``kontextd.callers``)
and where ``revoke --kill`` finds it. When the command exits, what it left behind
is ended too (SIGTERM, then SIGKILL after ``GRACE`` seconds) before the lease is
released: an agent's processes live exactly as long as its exec, like a systemd
service's do.

The wrapper is also made non-dumpable, so no process of the same uid (the agent
included) can ptrace it or read its memory or ``/proc/PID/environ``.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

GRACE = 2.0
LINUX = sys.platform.startswith("linux")


def guard_wrapper() -> None:
    """Subreaper and non-dumpable, before any child exists (Linux; elsewhere nothing)."""
    if not LINUX:
        return
    from kontext_cli import linux

    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    linux.prctl(linux.PR_SET_DUMPABLE, 0)


def reap(main: int) -> int | None:
    """Reap every child that has ended; the main child's status if it is among them."""
    status = None
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == main:
            status = os.waitstatus_to_exitcode(raw)


def children() -> set[tuple[int, int]]:
    """Our direct children now, as (pid, start): the helpers started before the command
    (an auto-started kontextd, a consent browser), which are not the command's tree."""
    me = os.getpid()
    return {(pid, start) for pid, (ppid, start) in _table().items() if ppid == me}


def end_leftovers(keep: set[tuple[int, int]]) -> list[int]:
    """End every process still below us once the command is done, except the subtrees
    of ``keep`` (see ``children``); returns the pids signalled."""
    if not LINUX or (not keep and not _has_children()):
        return []
    ended = _signal_tree(keep, signal.SIGTERM)
    if not ended:
        return []
    _signal_tree(keep, signal.SIGCONT)  # a stopped process acts on SIGTERM once continued
    deadline = time.monotonic() + GRACE
    while _signal_tree(keep, 0) and time.monotonic() < deadline:
        _has_children()  # reap
        time.sleep(0.02)
    deadline = time.monotonic() + 10 * GRACE  # a process in uninterruptible sleep: give up
    while time.monotonic() < deadline and _signal_tree(keep, signal.SIGKILL):
        _has_children()
        time.sleep(0.01)  # each round kills all that exist; the killed fork no more
    _has_children()
    return ended


def _has_children() -> bool:
    """Reap what has ended; is any child still there?"""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time) of every visible process."""
    table: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    fields = fh.read().rpartition(b")")[2].split()
                table[int(name)] = (int(fields[1]), int(fields[19]))
            except (OSError, IndexError, ValueError):
                continue
    return table


def _signal_tree(keep: set[tuple[int, int]], signum: int) -> list[int]:
    """Send ``signum`` (0: none) to every live process below us outside ``keep``'s subtrees."""
    table, me = _table(), os.getpid()
    kept = {pid for pid, start in keep if table.get(pid, (0, -1))[1] == start}
    below: list[int] = []
    for pid in table:
        up, depth = pid, 0
        while up in table and up not in kept and table[up][0] != me and depth < 256:
            up, depth = table[up][0], depth + 1
        if up in table and up not in kept and table[up][0] == me and pid != me:
            below.append(pid)
    for pid in below:
        try:
            if signum:
                os.kill(pid, signum)
        except ProcessLookupError:
            pass
    return below
