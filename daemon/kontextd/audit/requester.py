"""Who asks for an audit change, from kernel facts: the peer pid the control socket
reported (SO_PEERCRED), this uid (the socket serves no other), and the agent whose
``kontext exec`` the caller runs under, if any — an ancestor process that holds a
live credential lease (its wrapper or its child).

A stand-in for the control API's caller classification (issue 12): ``of`` is the
only call the routes make, so wiring in that classifier (which also follows
processes that left their tree, by namespace and cgroup) changes this one
function. Until then a caller that double-forks away from its ``kontext exec``
is not recognised; on systems without ``/proc`` no ancestry is known.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kontextd.core import Core

MAX_DEPTH = 64  # a process tree deeper than this is not a shell session


@dataclass(frozen=True)
class Requester:
    """The caller: its pid and uid, and ``agent:NAME`` when it runs inside that agent."""

    pid: int | None
    uid: int
    agent: str | None = None

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"pid": self.pid, "uid": self.uid}
        if self.agent is not None:
            shown["agent"] = self.agent
        return shown


def of(core: Core, pid: int | None) -> Requester:
    """Classify the control-API peer ``pid``."""
    holders: dict[int, str] = {}
    for cred in core.store.live_credentials():
        for held in (cred.wrapper_pid, cred.child_pid):
            if held:
                holders[held] = f"agent:{cred.agent}"
    agent = next((holders[p] for p in ancestry(pid) if p in holders), None)
    return Requester(pid, os.getuid(), agent)


def ancestry(pid: int | None) -> list[int]:
    """``pid`` and its ancestors, nearest first, from ``/proc/PID/stat`` (empty elsewhere)."""
    chain: list[int] = []
    while pid is not None and pid > 1 and len(chain) < MAX_DEPTH:
        chain.append(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            break
        # The command name in parentheses may hold spaces and ')': split after the last.
        fields = stat.rpartition(b")")[2].split()
        pid = int(fields[1]) if len(fields) > 1 else None
    return chain
