"""The control socket's second wall: what a caller from inside an agent may do.

``kontextd.callers`` decides from kernel facts whether a connection's peer is the
user or a process inside an agent's ``kontext exec`` tree (or in some other user
namespace). Confinement normally keeps an agent away from the socket altogether;
this wall holds when it does not (``exec.confine = "off"``, ``--no-confine``, a
platform without it). Such a caller may read the daemon's status and public
keys and revoke its own credential; everything else — a credential for any
agent, agents, consent, revocation of anything else, keys, policy, config,
integrations, the audit log, the daemon itself — is refused with one line
naming the agent, and audited as ``control.refused`` (rate-limited: one per
caller kind, agent and route a minute, with how many were left out, so an agent
cannot flood the log).
"""

from __future__ import annotations

import logging
import threading
import time

from kontext.common import wire
from kontextd.callers import AGENT, Caller
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.store.db import StoreError

log = logging.getLogger("kontextd.control")

AUDIT_INTERVAL = 60.0
# Routes an untrusted caller may use. ``POST /v1/revoke`` is checked again by the
# handler (only the caller's own credential); the lease messages act only on the
# leases held by the very connection they arrive on, which an agent never has.
AGENT_ROUTES = frozenset(
    {
        ("GET", "/v1/status"),
        ("GET", "/v1/keys"),
        ("POST", "/v1/revoke"),
        ("POST", "/v1/lease/child"),
        ("POST", "/v1/lease/release"),
    }
)
DELEGATE_HINT = (
    "an agent may use only its own credential (narrow it by token exchange at $KONTEXT_URL/token)"
)


def refusal(caller: Caller, method: str, path: str) -> ApiError:
    """The one line an untrusted caller gets."""
    where = f"{method} {path[:80]}"
    if caller.kind == AGENT:
        who = f"it comes from inside agent:{caller.agent} (pid {caller.pid}, {caller.how})"
    else:
        who = f"it comes from pid {caller.pid}: {caller.how}"
    return ApiError(wire.AGENT_REFUSED, f"refused {where}: {who}; {DELEGATE_HINT}")


def allowed(method: str, path: str) -> bool:
    return (method, path) in AGENT_ROUTES


class Gate:
    """Checks each request of an untrusted caller; audits what it refuses."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str, str], tuple[float, int]] = {}

    def caller(self, pid: int | None) -> Caller:
        """Who is on the other end of a connection (kernel facts only)."""
        return self.core.trees.classify(pid)

    def check(self, caller: Caller, method: str, path: str) -> None:
        """Raise the refusal (audited) unless ``caller`` may make this request."""
        if caller.trusted or allowed(method, path):
            return
        error = refusal(caller, method, path)
        self.refused(caller, method, path, error)
        raise error

    def record(self, event: dict[str, object], key: tuple[str, str, str]) -> None:
        now = time.monotonic()
        with self._lock:
            last, skipped = self._last.get(key, (-AUDIT_INTERVAL, 0))
            if now - last < AUDIT_INTERVAL:
                self._last[key] = (last, skipped + 1)
                return
            self._last[key] = (now, 0)
            if len(self._last) > 10_000:  # many distinct routes: forget the oldest
                oldest = min(self._last, key=lambda k: self._last[k][0])
                del self._last[oldest]
        try:
            with self.core.store.transaction() as tx:
                tx.append_event({**event, "not_recorded_since_last": skipped})
        except StoreError:  # the refusal stands; the log says why it is not audited
            log.warning("could not audit a refused control request: the database cannot be written")

    def refused(self, caller: Caller, method: str, path: str, error: ApiError) -> None:
        """Audit one refused request from an untrusted caller."""
        route = f"{method[:16]} {path[:100]}"
        log.warning("refused %s from %s", route, caller.describe())
        event: dict[str, object] = {
            "event": "control.refused",
            "reason": error.message,
            "route": route,
            "peer": caller.to_json(),
        }
        if caller.agent:
            event["agent"] = {"id": f"agent:{caller.agent}", "name": caller.agent}
        self.record(event, (caller.kind, caller.agent or "", route))
