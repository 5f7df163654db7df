"""What ``kontext exec`` asks for and what it receives.

Its JSON body becomes a ``CredentialRequest`` for the layers (the facts about the
caller come from the kernel and the daemon, never the body); ``Issued`` is the
answer, whose ``repr`` hides the token; ``release_reason`` names a lease's end.
Minting itself is ``kontextd.credentials.issue``, the one place for every path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kontext.common import validate, wire
from kontextd import agents
from kontextd.core import Core
from kontextd.errors import invalid
from kontextd.policy import facts
from kontextd.policy.request import CredentialRequest

DEFAULT_TTL = 600


@dataclass(frozen=True)
class Issued:
    """What ``exec`` receives; ``repr`` hides the token."""

    jti: str
    token: str
    expires_at: int
    env_names: list[str]
    strip_env: list[str]
    scopes: list[str]
    audience: list[str]
    env_values: dict[str, str] = field(default_factory=dict)  # base URLs; token-mode tokens
    warnings: list[str] = field(default_factory=list)  # exec prints each before the command

    def __repr__(self) -> str:
        return f"Issued(jti={self.jti!r}, token=<redacted>)"

    def to_json(self, agent: str) -> dict[str, Any]:
        return {
            "jti": self.jti,
            "token": self.token,
            "agent": agent,
            "expires_at": self.expires_at,
            "env": self.env_names,
            "strip_env": self.strip_env,
            "scopes": self.scopes,
            "audience": self.audience,
            "env_values": self.env_values,
            "warnings": self.warnings,
        }


def _ttl(raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise invalid("ttl must be a number of seconds")
    if not validate.MIN_TTL <= raw <= validate.MAX_TTL:
        raise invalid(f"ttl must be between {validate.MIN_TTL}s and {validate.MAX_TTL}s")
    return raw


def _target(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise invalid("target must be a string")
    try:
        return validate.target(raw)
    except validate.InvalidInput as exc:
        raise invalid(str(exc)) from exc


def build_request(core: Core, body: dict[str, Any], peer_pid: int | None) -> CredentialRequest:
    """Validate an exec's JSON body into a request for the layers; the facts about
    the caller come from the kernel (``peer_pid``) and the daemon, not the body."""
    name = agents.name_from(body.get("agent"))
    agent = core.store.agent(name)
    raw_scopes = body.get("scopes")
    if raw_scopes is None or raw_scopes == []:
        scopes = list(agent.scopes) if agent else []
    else:
        scopes = agents.check_scopes(core, raw_scopes, field_name="scopes")
    ttl = _ttl(body.get("ttl"))
    default_ttl = min(DEFAULT_TTL, agent.max_ttl) if agent else DEFAULT_TTL
    return CredentialRequest(
        agent_name=name,
        agent=agent,
        user=core.user,
        scopes=tuple(scopes),
        target=_target(body.get("target")),
        ttl=ttl if ttl is not None else default_ttl,
        ttl_explicit=ttl is not None,
        interactive=_reads(core, "interactive") and facts.controlling_terminal(peer_pid),
        issuer=core.login_issuer,
        external_login=core.login_external,
    )


def _reads(core: Core, attribute: str) -> bool:
    """Whether the org policy in force reads ``attribute`` (``loader.Bundle.reads``)."""
    org = core.org_policy
    return org is not None and org.bundle.reads(attribute)


def release_reason(status: Any) -> str:
    """The end reason for ``POST /v1/lease/release``; ``status`` is the child's exit status
    (negative: the signal that killed it)."""
    if not isinstance(status, int) or isinstance(status, bool) or not -64 <= status <= 255:
        raise invalid("status must be the child's exit status")
    how = f"exited with status {status}" if status >= 0 else f"killed by signal {-status}"
    return f"lease closed: the process {how}"


def all_env_names(core: Core) -> list[str]:
    """Every variable exec strips from the child first: each integration's, kontext's, and
    a CI job's identity (the agent must not obtain the job's OIDC token)."""
    names = {var for i in core.config.integrations.values() for var in i.env}
    return sorted(names | set(wire.KONTEXT_ENV) | set(wire.CI_IDENTITY_ENV))
