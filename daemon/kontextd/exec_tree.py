"""What the daemon knows about each exec's process tree, and ``revoke --kill``.

The wrapper tells kontextd, on its lease connection, the pid of the child it
started, whether it confined it (an unconfined child is audited) and which of
its own processes are helpers, not the agent's. kontextd checks the rest with
the kernel (``/proc``: start times, the child's user namespace) and keeps it in
``core.trees`` (``kontextd.callers``), where the second wall and
``kontextd.killer`` find it.
"""

from __future__ import annotations

from typing import Any

from kontextd import killer
from kontextd.core import Core
from kontextd.errors import invalid, not_found


def record_child(core: Core, jti: str, body: dict[str, Any], wrapper_pid: int | None) -> None:
    """The wrapper tells us its child's pid, so ``revoke --kill`` can stop it, and
    whether it confined it; an unconfined child is audited."""
    pid = body.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise invalid("pid must be a positive process id")
    cred = core.store.credential(jti)
    if cred is None or cred.wrapper_pid != wrapper_pid:
        raise not_found("no credential held by this connection")
    start = process_start(pid)
    core.store.set_child(jti, pid, start)
    core.trees.set_child(jti, pid, int(start) if start else None, _helpers(body.get("helpers")))
    if body.get("confined") is False:
        why = body.get("why")
        with core.store.transaction() as tx:
            tx.append_event(
                {
                    "event": "exec.unconfined",
                    "agent": {"id": f"agent:{cred.agent}"},
                    "jti": jti,
                    "pid": pid,
                    "reason": str(why)[:300] if why else "not said",
                }
            )


def _helpers(raw: Any) -> frozenset[tuple[int, int]]:
    """The wrapper's helper processes, ``[[pid, start], ...]``, as it reported them."""
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(
        (p[0], p[1])
        for p in raw[:16]
        if isinstance(p, list) and len(p) == 2 and all(type(x) is int for x in p)
    )


def process_start(pid: int) -> str | None:
    """The process start time (Linux /proc stat field 22), to detect pid reuse."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def kill_trees(core: Core, agent: str) -> list[int]:
    """End the whole process tree of every live exec of ``agent`` (``kontextd.killer``)."""
    trees = core.trees.of_agent(agent)
    signalled = killer.terminate(trees)
    if signalled:
        with core.store.transaction() as tx:
            for tree in trees:
                if tree.jti in signalled:
                    tx.append_event(
                        {
                            "event": "process.killed",
                            "agent": {"id": f"agent:{agent}"},
                            "jti": tree.jti,
                            "pid": tree.child[0] if tree.child else None,
                            "pids": signalled[tree.jti],
                            "signal": "SIGTERM",
                            "by": core.caller_name(),
                        }
                    )
    return [pid for pids in signalled.values() for pid in pids]
