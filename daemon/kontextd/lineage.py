"""Kernel facts about processes, read from ``/proc``: parent, start time, user namespace.

The daemon decides who is calling from these facts and never from anything the
caller says about itself (its environment, argv, a header). A process is named
by ``(pid, start)``, the start time in clock ticks since boot (``/proc/PID/stat``
field 22): a pid can be reused, the pair cannot. ``stat`` is readable for any
process of any uid; ``/proc/PID/ns/user`` only for one we may ptrace (the
caller's own uid and dumpable, or we are root), so ``userns`` falls back to the
namespace's uid map, which is always readable.

On systems without ``/proc`` (macOS) every function answers "unknown" (None,
empty), and callers treat unknown as described where they use it.
"""

from __future__ import annotations

import os
from collections.abc import Container

ProcId = tuple[int, int]  # (pid, start time in clock ticks since boot)
MAX_DEPTH = 256  # a process tree deeper than this is not a real one: stop walking


def _stat(pid: int) -> tuple[bytes, int, int] | None:
    """(state, parent pid, start time) of ``pid``, or None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw.rpartition(b")")[2].split()
    try:
        return fields[0], int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of ``pid``, or None if it is gone or unreadable."""
    facts = _stat(pid)
    return None if facts is None else (facts[1], facts[2])


def is_zombie(pid: int) -> bool:
    """Has ``pid`` exited, waiting only to be reaped (or is it gone)?"""
    facts = _stat(pid)
    return facts is None or facts[0] in (b"Z", b"X")


def ident(pid: int) -> ProcId | None:
    """``(pid, start)`` of a live process, or None."""
    facts = stat(pid)
    return None if facts is None else (pid, facts[1])


def ancestry(pid: int, known: Container[ProcId] = ()) -> list[ProcId]:
    """``pid`` and its ancestors up to (not including) pid 1, nearest first; the walk
    ends at the first one in ``known`` (which is included), whose own ancestors the
    caller has already judged."""
    chain: list[ProcId] = []
    while pid > 1 and len(chain) < MAX_DEPTH:
        facts = stat(pid)
        if facts is None:
            break
        chain.append((pid, facts[1]))
        if chain[-1] in known:
            break
        pid = facts[0]
    return chain


def userns(pid: int | str) -> str | None:
    """The user namespace ``pid`` lives in: ``user:[INODE]`` where we may read the link,
    else its uid map's text (always readable), else None (gone)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except PermissionError:
        pass
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/uid_map", "rb") as fh:
            return "map:" + " ".join(fh.read().decode().split())
    except OSError:
        return None


def userns_inode(pid: int) -> str | None:
    """``user:[INODE]`` of ``pid``'s user namespace, or None where we may not read it."""
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except OSError:
        return None


class Self:
    """This process's own user namespace, both ways ``userns`` may report one."""

    def __init__(self) -> None:
        self.inode = userns_inode(os.getpid())
        try:
            with open("/proc/self/uid_map", "rb") as fh:
                self.uid_map: str | None = "map:" + " ".join(fh.read().decode().split())
        except OSError:
            self.uid_map = None

    def is_ours(self, ns: str | None) -> bool:
        """Is ``ns`` (from ``userns``) this process's own user namespace?"""
        if ns is None:
            return False
        return ns == (self.uid_map if ns.startswith("map:") else self.inode)

    @property
    def available(self) -> bool:
        return self.inode is not None or self.uid_map is not None


def all_processes() -> dict[int, tuple[int, int]]:
    """Every visible process: pid -> (parent pid, start)."""
    out: dict[int, tuple[int, int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            facts = stat(int(name))
            if facts is not None:
                out[int(name)] = facts
    return out


def descendants(
    root: ProcId,
    prune: frozenset[ProcId] = frozenset(),
    table: dict[int, tuple[int, int]] | None = None,
) -> list[ProcId]:
    """Every process below ``root`` (not ``root`` itself), if ``root`` is still that
    process; the subtrees of the processes in ``prune`` are left out, they included
    (``table``: an ``all_processes()`` answer to reuse)."""
    table = all_processes() if table is None else table
    if table.get(root[0], (0, -1))[1] != root[1]:
        return []
    children: dict[int, list[int]] = {}
    for pid, (ppid, _start) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[ProcId] = []
    todo = list(children.get(root[0], []))
    while todo:
        pid = todo.pop()
        proc = (pid, table[pid][1])
        if proc in prune:
            continue
        found.append(proc)
        todo.extend(children.get(pid, []))
    return found


def holds_socket(pid: int, inode: int) -> bool | None:
    """Whether ``pid`` has the socket ``inode`` among its open files; None when its
    files cannot be read (it is gone, or not dumpable: ``/proc/PID/fd`` follows the
    ptrace read check, proc(5))."""
    target = f"socket:[{inode}]"
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == target:
                return True
        except OSError:
            continue  # closed meanwhile
    return False
