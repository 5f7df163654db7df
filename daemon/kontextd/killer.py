"""``revoke agent:X --kill``: end the whole process tree of every exec of X.

Each live exec's wrapper is a child subreaper, so everything its command started
— a process group of its own, a new session (``setsid``), a double-forked
orphan — is still below the wrapper in ``/proc``. We signal every process below
it (not the wrapper: it sees its child end, reaps the rest and releases the
lease): SIGTERM (and SIGCONT, so a stopped one can act on it), then, after
``GRACE`` seconds, SIGKILL to whatever is left, round after round until none is.
Each signal goes through a pidfd opened and checked against the process's start
time, so a pid reused in the meantime is never hit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from kontextd import lineage
from kontextd.callers import Tree

log = logging.getLogger("kontextd.kill")
GRACE = 3.0
ROUNDS = 50  # SIGKILL rounds at most (a fork bomb loses a generation per round)


def below(tree: Tree) -> list[lineage.ProcId]:
    """Every live (non-zombie) process below the tree's wrapper but its helpers (an
    auto-started kontextd — this very daemon — or a consent browser) and theirs."""
    me = lineage.ident(os.getpid())
    prune = tree.helpers | ({me} if me else frozenset())
    found = lineage.descendants(tree.wrapper, prune)
    return [p for p in found if not lineage.is_zombie(p[0])]


def send(proc: lineage.ProcId, signum: int) -> bool:
    """Signal exactly ``proc`` (pid and start time), never a reuse of its pid."""
    try:
        fd = os.pidfd_open(proc[0])
    except OSError:
        return False
    try:
        if lineage.ident(proc[0]) != proc:  # checked after the pidfd pins the process
            return False
        signal.pidfd_send_signal(fd, signum)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def terminate(trees: list[Tree]) -> dict[str, list[int]]:
    """SIGTERM every process of each tree now; SIGKILL what is left later (a thread).
    Returns, per credential id, the pids signalled."""
    signalled: dict[str, list[int]] = {}
    for tree in trees:
        procs = below(tree)
        hit = [p for p in procs if send(p, signal.SIGTERM)]
        for proc in hit:
            send(proc, signal.SIGCONT)
        if hit:
            signalled[tree.jti] = [pid for pid, _ in hit]
    if signalled:
        threading.Thread(target=_finish, args=(trees,), name="kill", daemon=True).start()
    return signalled


def _finish(trees: list[Tree]) -> None:
    """After the grace period, SIGKILL until no process is left below any wrapper."""
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline and any(below(t) for t in trees):
        time.sleep(0.05)
    for _ in range(ROUNDS):
        left = [p for t in trees for p in below(t)]
        if not left:
            return
        for proc in left:
            with contextlib.suppress(OSError):
                send(proc, signal.SIGKILL)
        time.sleep(0.02)
    log.warning("processes of a killed exec are still alive after %d SIGKILL rounds", ROUNDS)
