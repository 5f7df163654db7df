"""What a credential request carries through the layers, and what they answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from kontextd.store.rows import AgentRow

Decision = Literal["allow", "deny"]


@dataclass(frozen=True)
class CredentialRequest:
    """One ``exec``'s ask: an agent, scopes (``integration:scope``), target, TTL."""

    agent_name: str
    agent: AgentRow | None
    user: str
    scopes: tuple[str, ...]
    target: str | None
    ttl: int
    ttl_explicit: bool
    # Established by the daemon, never taken from the request (``policy/facts.py``):
    interactive: bool = False  # the requesting process has a controlling terminal
    issuer: str = ""  # the issuer of the user's live login session; "" for the local account
    external_login: bool = False  # that issuer is an external OIDC provider
    # The one consent grant this request may rest on (an MCP client's tokens rest on
    # the approval given to that client, not on any grant that happens to cover them).
    grant: str | None = None

    @cached_property  # read by every layer, the mint, the row and the audit event
    def integrations(self) -> tuple[str, ...]:
        return tuple(sorted({s.partition(":")[0] for s in self.scopes}))


@dataclass(frozen=True)
class Verdict:
    """One layer's answer."""

    layer: str
    decision: Decision
    reason: str
    policy_ids: tuple[str, ...] = ()
    # The consent layer's allow names the grant it rests on and when that ends
    # (the grant's expiry, or the login session's if sooner): a credential is
    # stored with its grant and never outlives it.
    grant_id: str | None = None
    until: float | None = None
    # Whether a person could turn this consent denial into an allow on the consent
    # page. A CI session's trust policy cannot be answered in a browser: its
    # denial is final (exec never opens a page or waits for one).
    askable: bool = True

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"


@dataclass(frozen=True)
class PathResult:
    """Every layer's verdict, in order."""

    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)

    @property
    def allowed(self) -> bool:
        return bool(self.verdicts) and all(v.allowed for v in self.verdicts)

    @property
    def first_denial(self) -> Verdict | None:
        return next((v for v in self.verdicts if not v.allowed), None)

    @property
    def grant_id(self) -> str | None:
        """The consent grant an allowed request rests on."""
        return next((v.grant_id for v in self.verdicts if v.grant_id is not None), None)

    @property
    def until(self) -> float | None:
        """The soonest time any allowing layer's ground ends (grant or session)."""
        ends = [v.until for v in self.verdicts if v.until is not None]
        return min(ends) if ends else None

    def summary(self) -> dict[str, str]:
        """The audit's ``policy_evaluation``: layer -> allow|deny."""
        return {v.layer: v.decision for v in self.verdicts}

    def reasons(self) -> dict[str, str]:
        return {v.layer: v.reason for v in self.verdicts}

    def policy_ids(self) -> dict[str, list[str]]:
        """The ids of the policies that decided, per layer (only the org layer has any)."""
        return {v.layer: list(v.policy_ids) for v in self.verdicts if v.policy_ids}
