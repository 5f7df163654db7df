"""Who asks for an audit change, from kernel facts: the peer pid the control socket
reported (SO_PEERCRED), this uid (the socket serves no other), and the agent whose
``kontext exec`` the caller runs under, if any — as ``kontextd.callers`` classifies
every control caller (ancestry below a live exec's subreaper wrapper, user
namespaces). The control API's second wall already refuses prune to an agent;
this names who asked in the anchor and the event.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kontextd.core import Core


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
    caller = core.trees.classify(pid)
    return Requester(pid, os.getuid(), f"agent:{caller.agent}" if caller.agent else None)
