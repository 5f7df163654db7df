"""Who is calling: the user, or a process inside an agent's ``kontext exec`` tree.

Every live exec leaves the daemon the kernel's facts about its process tree: the
wrapper (the peer of the lease connection, a ``PR_SET_CHILD_SUBREAPER``, so a
double-forked or ``setsid`` orphan is reparented to it, not to init), its child
(pid and start time) and the child's user namespace when it is confined. A
control connection's peer (SO_PEERCRED's pid) is classified from those facts
alone: its ancestry through ``/proc/PID/stat`` reaching a live wrapper or child
makes it that agent; so does living in a recorded agent's user namespace; a peer
in any other user namespace than the daemon's (a sandbox, a container, or an
agent's nested ``unshare -U``) is untrusted too. Environment variables play no
part: an agent can unset or forge them.

The wrapper itself is not the agent: it is kontext's own code, started by the
user, non-dumpable, and it acts only on its own lease.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from kontextd import lineage

USER, AGENT, FOREIGN = "user", "agent", "foreign"
CLEAN_CACHE = 4096  # (pid, start) of processes known to be outside every agent tree


@dataclass
class Tree:
    """The kernel facts of one live exec (one lease connection)."""

    jti: str
    agent: str
    wrapper: lineage.ProcId
    child: lineage.ProcId | None = None
    child_ns: str | None = None  # ``user:[INODE]`` when the child was confined
    # The wrapper's own helpers started before the command (an auto-started kontextd,
    # a consent browser): below the wrapper, but not the agent's.
    helpers: frozenset[lineage.ProcId] = frozenset()


@dataclass(frozen=True)
class Caller:
    """The verdict on one peer: ``kind`` is USER, AGENT or FOREIGN."""

    kind: str
    pid: int | None
    agent: str | None = None
    jti: str | None = None
    how: str = ""

    @property
    def trusted(self) -> bool:
        return self.kind == USER

    def describe(self) -> str:
        """Who, in words, for refusals and logs."""
        if self.kind == AGENT:
            return f"agent:{self.agent} (pid {self.pid}, {self.how})"
        if self.kind == FOREIGN:
            return f"pid {self.pid} ({self.how})"
        return f"pid {self.pid}"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"pid": self.pid, "kind": self.kind}
        if self.agent:
            out["agent"] = f"agent:{self.agent}"
        return out


class Trees:
    """The live exec trees, and the classification of callers against them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trees: dict[str, Tree] = {}
        self._clean: OrderedDict[lineage.ProcId, None] = OrderedDict()
        self._self = lineage.Self()

    # -- the facts ------------------------------------------------------------

    def add(self, jti: str, agent: str, wrapper_pid: int | None) -> None:
        """A credential was issued to the exec whose wrapper is ``wrapper_pid``."""
        wrapper = lineage.ident(wrapper_pid) if wrapper_pid else None
        if wrapper is None:
            return  # no pid (not Linux) or gone already: nothing to recognise it by
        with self._lock:
            self._trees[jti] = Tree(jti, agent, wrapper)

    def set_child(
        self,
        jti: str,
        pid: int,
        start: int | None,
        helpers: frozenset[lineage.ProcId] = frozenset(),
    ) -> None:
        """The wrapper started its child: remember it, its user namespace and the
        wrapper's helpers (which ``revoke --kill`` leaves alone)."""
        ns = lineage.userns_inode(pid)
        with self._lock:
            tree = self._trees.get(jti)
            if tree is not None and start is not None:
                tree.child = (pid, start)
                tree.helpers = helpers
                if ns is not None and not self._self.is_ours(ns):
                    tree.child_ns = ns

    def drop(self, jtis: list[str]) -> None:
        """The lease connection closed: its wrapper and tree are gone."""
        with self._lock:
            for jti in jtis:
                self._trees.pop(jti, None)

    def live(self) -> bool:
        """Whether any exec tree is live (nothing to look for otherwise)."""
        return bool(self._trees)

    def of_agent(self, agent: str) -> list[Tree]:
        with self._lock:
            return [t for t in self._trees.values() if t.agent == agent]

    # -- the verdict ----------------------------------------------------------

    def classify(self, pid: int | None) -> Caller:
        """Classify the peer ``pid`` from kernel facts (see the module docstring)."""
        if pid is None:
            return Caller(USER, None, how="no peer pid on this platform")
        if pid <= 0:
            return Caller(FOREIGN, pid, how="its pid is not visible to kontextd")
        with self._lock:
            trees = list(self._trees.values())
        found = self._by_ancestry(pid, trees)
        if found is not None:
            return found
        return self._by_namespace(pid, trees)

    def holder(self, inode: int) -> Caller | None:
        """The agent whose ``kontext exec`` tree holds the socket ``inode`` (the far end
        of a loopback TCP connection, ``kontext.common.peeruid``), or None. The wrapper's
        helpers (a consent browser, an auto-started kontextd) are not the agent's. A
        process of a tree whose open files cannot be read (it made itself not dumpable)
        could be holding it: that counts as the agent too (fail closed)."""
        with self._lock:
            trees = list(self._trees.values())
        if not trees:
            return None
        table = lineage.all_processes()
        me = lineage.ident(os.getpid())  # an exec may have started this very daemon
        hidden: Caller | None = None
        for tree in trees:
            prune = tree.helpers | ({me} if me else frozenset())  # as revoke --kill does
            for pid, _start in lineage.descendants(tree.wrapper, prune, table):
                held = lineage.holds_socket(pid, inode)
                if held:
                    how = f"its socket is held under kontext exec pid {tree.wrapper[0]}"
                    return Caller(AGENT, pid, tree.agent, tree.jti, how)
                if held is None and hidden is None and pid in table and lineage.stat(pid):
                    how = f"not dumpable, under kontext exec pid {tree.wrapper[0]}"
                    hidden = Caller(AGENT, pid, tree.agent, tree.jti, how)
        return hidden

    def _by_ancestry(self, pid: int, trees: list[Tree]) -> Caller | None:
        wrappers = {t.wrapper: t for t in trees}
        children = {t.child: t for t in trees if t.child is not None}
        chain = lineage.ancestry(pid, self._clean)  # no /proc reads above a known-clean one
        if not chain:
            return Caller(FOREIGN, pid, how="it exited before it could be identified")
        walked: list[lineage.ProcId] = []
        for proc in chain:
            tree = wrappers.get(proc)
            if tree is not None and proc == chain[0]:
                return Caller(USER, pid, how=f"the kontext exec wrapper of agent:{tree.agent}")
            if tree is None:
                tree = children.get(proc)
            if tree is not None:
                how = f"under kontext exec pid {tree.wrapper[0]}"
                return Caller(AGENT, pid, tree.agent, tree.jti, how)
            if proc in self._clean:
                break
            walked.append(proc)
        self._remember_clean(walked)
        return None

    def _remember_clean(self, procs: list[lineage.ProcId]) -> None:
        """Outside every tree now means outside every tree later: a process joins a
        tree only by being started inside it, and an exec's child runs the agent's
        code only after its wrapper's credential (and so its tree) is recorded."""
        with self._lock:
            for proc in procs:
                self._clean[proc] = None
            while len(self._clean) > CLEAN_CACHE:
                self._clean.popitem(last=False)

    def _by_namespace(self, pid: int, trees: list[Tree]) -> Caller:
        if not self._self.available:
            return Caller(USER, pid)
        ns = lineage.userns(pid)
        if ns is None:
            return Caller(FOREIGN, pid, how="it exited before it could be identified")
        if self._self.is_ours(ns):
            return Caller(USER, pid)
        for tree in trees:
            if tree.child_ns == ns:
                how = f"in the user namespace of kontext exec pid {tree.wrapper[0]}"
                return Caller(AGENT, pid, tree.agent, tree.jti, how)
        how = "it runs in another user namespace (a sandbox or container)"
        return Caller(FOREIGN, pid, how=how)
