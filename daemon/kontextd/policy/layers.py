"""The three layers of the request path.

The org layer is ``kontextd.policy.cedar.CedarOrgPolicy``; ``NoOrgPolicy`` is
the explicit allow-all stand-in for set-ups without it (its name says what it
is). The user-consent layer is ``kontextd.federation.layer.SessionConsent``:
the grants the user approved on the consent page
(``kontextd.consent.layer.GrantConsent``), or in a CI session the trust rules
that named the workload. ``AgentPermissions`` is the agent's own allow-list and
TTL cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kontext.common.validate import format_duration
from kontextd.policy.request import CredentialRequest, PathResult, Verdict

ORG_POLICY = "org_policy"
USER_CONSENT = "user_consent"
AGENT_PERMISSIONS = "agent_permissions"

# The org layer's answer when no policy is configured: one value (verdicts are frozen),
# not a new one on every issuance.
NO_POLICY = Verdict(ORG_POLICY, "allow", "no org policy is configured")

LAYER_TITLES = {
    ORG_POLICY: "org policy",
    USER_CONSENT: "user consent",
    AGENT_PERMISSIONS: "agent permissions",
}


class Layer(Protocol):
    """One layer: a name and an evaluate method. A layer that cannot decide denies."""

    name: str

    def evaluate(self, request: CredentialRequest) -> Verdict: ...


class NoOrgPolicy:
    """Org layer with no policy configured: allows everything (documented)."""

    name = ORG_POLICY

    def evaluate(self, request: CredentialRequest) -> Verdict:
        return NO_POLICY


class AgentPermissions:
    """The agent exists, is enabled, may use every scope asked for, within its max TTL."""

    name = AGENT_PERMISSIONS

    def evaluate(self, request: CredentialRequest) -> Verdict:
        agent = request.agent
        who = f"agent:{request.agent_name}"
        if agent is None:
            return Verdict(self.name, "deny", f"{who} does not exist")
        if agent.disabled_at is not None:
            why = agent.disabled_reason or "disabled"
            return Verdict(self.name, "deny", f"{who} is disabled ({why})")
        missing = [s for s in request.scopes if s not in agent.scopes]
        if missing:
            return Verdict(self.name, "deny", f"{who} may not use {', '.join(missing)}")
        if not request.scopes:
            return Verdict(self.name, "deny", f"{who} has no scopes to grant")
        if request.ttl_explicit and request.ttl > agent.max_ttl:
            return Verdict(
                self.name,
                "deny",
                f"{who} may hold credentials for at most {format_duration(agent.max_ttl)}, "
                f"not {format_duration(request.ttl)}",
            )
        return Verdict(self.name, "allow", f"{who} is allowed {' '.join(request.scopes)}")


def evaluate_layers(layers: Sequence[Layer], request: CredentialRequest) -> PathResult:
    """Run every layer (all are side-effect free) so the audit records each verdict."""
    verdicts = []
    for layer in layers:
        try:
            verdicts.append(layer.evaluate(request))
        except Exception as exc:  # deny by default: a layer that fails cannot allow
            verdicts.append(Verdict(layer.name, "deny", f"layer failed: {type(exc).__name__}"))
    return PathResult(tuple(verdicts))


def denial_message(result: PathResult) -> str:
    """``denied by agent permissions: agent:x may not use github:pulls:write``."""
    denial = result.first_denial
    if denial is None:
        return "allowed"
    return f"denied by {LAYER_TITLES.get(denial.layer, denial.layer)}: {denial.reason}"
