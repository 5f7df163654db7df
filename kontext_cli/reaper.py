"""The ``kontext exec`` wrapper as its tree's reaper (Linux).

The wrapper makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process
its command leaves behind — double-forked, ``setsid``, a daemonised server — is
reparented to the wrapper instead of to init. So the whole tree stays below the
wrapper, where kontextd recognises it from ``/proc`` ancestry (``kontextd.callers``)
and where ``revoke --kill`` finds it. When the command exits, what it left behind
is ended too (SIGTERM, then SIGKILL after ``GRACE`` seconds) before the lease is
released: an agent's processes live exactly as long as its exec, like a systemd
service's do.

While the command runs, the wrapper relays the signals a process aims at it
(``FORWARDED``) to the command and reaps what ends; when the command is done, it
exits as the command did (``exit_as``), by the same signal if it was killed.

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

# Signals we relay to the child when a process sends them to us.
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGALRM,
)

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
    if signum:
        for pid in below:
            _kill_quietly(pid, signum)
    return below


def wait_relaying(pid: int) -> int:
    """Relay signals until the child ends; returns its status (negative: killed by that signal)."""
    waitset = {*FORWARDED, signal.SIGCHLD}
    while True:
        if hasattr(signal, "sigwaitinfo"):
            info = signal.sigwaitinfo(waitset)
            signum, sent_by_process = info.si_signo, info.si_code <= 0
        else:  # macOS: no sigwaitinfo; poll the pending set
            signum, sent_by_process = _wait_portable(waitset), True
        if signum != signal.SIGCHLD:
            # A terminal's ^C/^\ reach the whole foreground group, the child
            # included (si_code > 0: from the kernel); relay only what a
            # process aimed at us alone.
            if sent_by_process:
                _kill_quietly(pid, signum)
            continue
        status = reap(pid)  # orphans reparented to us are reaped as they end
        if status is not None:
            return status


def _wait_portable(waitset: set[signal.Signals]) -> int:
    return signal.sigwait(waitset)


def _kill_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def exit_as(status: int) -> int:
    """Exit as the child did: its code, or death by the same signal."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {*FORWARDED, signal.SIGCHLD})
    if status >= 0:
        return status
    signum = -status
    import resource

    # Dying by a core-dumping signal must not write our memory (the token) to disk.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if signum not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be (re)set
        signal.signal(signum, signal.SIG_DFL)
    sys.stdout.flush()
    os.kill(os.getpid(), signum)
    return 128 + signum
