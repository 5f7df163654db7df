"""The user-consent layer of a CI session: a rule of the trust policy, not a browser grant.

``SessionConsent`` is the request path's consent layer: for a browser login it
is ``GrantConsent`` (what the user approved on the consent page), for a CI
session ``TrustConsent`` — the trust rules that named the workload when it
logged in (``kontextd.federation.session``). A request is allowed only if one
rule, still within its end, names the agent, every scope asked for and the
target, and its ``max_ttl`` allows the TTL asked for; the verdict names the rule
(``policy_ids`` in the audit). Its denial is final: no consent page can answer it.

Both read the session through narrow views of the store, so neither needs the
daemon's core.
"""

from __future__ import annotations

import json
import time
from typing import Protocol

from kontext.common.validate import format_duration
from kontextd.federation.trust import Rule
from kontextd.policy.layers import USER_CONSENT, Layer
from kontextd.policy.request import CredentialRequest, Verdict
from kontextd.store.federation_sql import FederatedRow
from kontextd.store.oauth_sql import SessionRow


class FederationSource(Protocol):
    """What a trust decision reads: the current session and its federated record."""

    def current_session(self) -> SessionRow | None: ...

    def federated(self, session_id: str) -> FederatedRow | None: ...


def granted(row: FederatedRow) -> list[tuple[Rule, float]]:
    """The rules a session holds, each with when it ends (Unix time)."""
    return [(Rule.from_json(g["rule"]), float(g["until"])) for g in json.loads(row.rules)]


def _deny(reason: str) -> Verdict:
    return Verdict(USER_CONSENT, "deny", reason, askable=False)


class TrustConsent:
    """Allows what a trust rule of the current CI session names (module docstring)."""

    name = USER_CONSENT

    def __init__(self, db: FederationSource) -> None:
        self.db = db

    def applies(self) -> bool:
        """Whether the current session is a CI workload's."""
        session = self.db.current_session()
        return session is not None and session.federated

    def evaluate(self, request: CredentialRequest) -> Verdict:
        session = self.db.current_session()
        record = self.db.federated(session.id) if session is not None else None
        if session is None or record is None:
            return _deny("this CI session has no trust rules recorded")
        again = "run 'kontext login --federate …' again"
        if session.ended_at is not None:
            return _deny(f"the CI session of {session.user} ended ({session.end_reason}); {again}")
        now = time.time()
        if session.expires_at <= now:
            return _deny(f"the CI session of {session.user} expired; {again}")
        return self._by_rules(request, granted(record), now)

    def _by_rules(
        self, request: CredentialRequest, rules: list[tuple[Rule, float]], now: float
    ) -> Verdict:
        who = f"agent:{request.agent_name}"
        asked = " ".join(request.scopes) or "no scope"
        nearest = f"no trust rule lets {request.user} use {who}"
        for rule, until in rules:
            if until <= now or request.agent_name not in rule.agents:
                continue
            missing = [s for s in request.scopes if s not in rule.scopes]
            if missing:
                nearest = f"trust rule {rule.name} does not name {', '.join(missing)} for {who}"
            elif not rule.covers_target(request.target):
                targets = ", ".join(rule.targets)
                nearest = (
                    f"trust rule {rule.name} names {who} only for target {targets}, "
                    f"not {request.target or 'no target'}"
                )
            elif rule.max_ttl is not None and request.ttl_explicit and request.ttl > rule.max_ttl:
                nearest = (
                    f"trust rule {rule.name} allows credentials of at most "
                    f"{format_duration(rule.max_ttl)}, not {format_duration(request.ttl)}"
                )
            else:
                ends = until if rule.max_ttl is None else min(until, now + rule.max_ttl)
                return Verdict(
                    USER_CONSENT,
                    "allow",
                    f"trust rule {rule.name} lets {request.user} use {who} with {asked}",
                    policy_ids=(rule.name,),
                    until=ends,
                )
        return _deny(nearest)


class SessionConsent:
    """The consent layer: the trust policy in a CI session, the user's grants otherwise."""

    name = USER_CONSENT

    def __init__(self, grants: Layer, trust: TrustConsent) -> None:
        self.grants = grants
        self.trust = trust

    def evaluate(self, request: CredentialRequest) -> Verdict:
        layer: Layer = self.trust if self.trust.applies() else self.grants
        return layer.evaluate(request)
