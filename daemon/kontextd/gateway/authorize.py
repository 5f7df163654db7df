"""Deciding one gateway request: whose token, which route, which scope and target.

Checks, in order (deny by default — any check that cannot decide refuses):

1. the integration exists and has route rules (else 404);
2. a bearer token of ours: signature, ``typ``, ``iss``, ``exp`` (else 401, RFC 6750 §3.1);
3. its credential — however it was minted: exec, RFC 8693 exchange, consent code —
   is still live in the store; revocation reaches us at once (else 403);
4. its agent (``act.sub``) still exists and is enabled (else 403);
5. ``aud`` names this integration (else 403);
6. the path is safe and a route rule matches (else 403: unknown routes are denied);
7. the credential carries the rule's scope, and its target (if any) is the rule's (else 403);
8. the upstream secret was connected for the origin ``base_url`` names now (else 403:
   an edited config.toml never redirects a secret, ``gateway/binding``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kontext.common import routes, validate
from kontext.common.integrations import Integration
from kontextd.core import Core
from kontextd.gateway import binding, connections
from kontextd.tokens import verify

SCHEMES = ("bearer", "token")  # "token" is GitHub's own spelling of a bearer header


@dataclass
class Decision:
    """Allowed (``status`` 0) or refused with an HTTP status and a one-line reason."""

    integration: Integration | None
    status: int = 0
    reason: str = ""
    claims: dict[str, Any] = field(default_factory=dict)
    token: str = ""
    scope: str | None = None
    target: str | None = None
    upstream: str | None = None  # the origin the call would go to (audited as api.call's)

    def __repr__(self) -> str:
        return f"Decision(status={self.status}, reason={self.reason!r}, token=<redacted>)"

    @property
    def allowed(self) -> bool:
        return self.status == 0

    def refuse(self, status: int, reason: str) -> Decision:
        self.status, self.reason = status, reason
        return self


def bearer(header: str | None) -> str | None:
    """The token in ``Authorization: Bearer X`` (or ``token X``), else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() in SCHEMES and value else None


def decide(core: Core, name: str, method: str, raw_path: str, auth: str | None) -> Decision:
    """Run every check for ``METHOD /gw/NAME/raw_path``."""
    integration = core.config.integrations.get(name)
    decision = Decision(integration)
    if integration is None or not integration.routes or not integration.base_url:
        return decision.refuse(404, f"no gateway for integration {name[:40]!r}")
    decision.upstream = binding.origin(integration.base_url)
    token = bearer(auth)
    claims = verify.cached_claims(core, token)
    if token is None or claims is None:
        return decision.refuse(401, "a valid kontext token is required (Authorization: Bearer)")
    decision.claims, decision.token = claims, token
    status = verify.status(core.store, str(claims["jti"]))
    if status is None or status[0] != "live" or status[1] <= time.time():
        word = status[0] if status else "unknown"
        return decision.refuse(403, f"credential {word}")
    refusal = _agent_refusal(core, claims)
    if refusal is not None:
        return decision.refuse(403, refusal)
    if name not in _audience(claims):
        return decision.refuse(403, f"the credential is not for {name} (aud)")
    decision = _check_route(decision, integration, method, raw_path)
    why = connections.moved(core, integration) if decision.allowed else None
    if why is not None:
        return decision.refuse(403, f"{name} {why}: run 'kontext integration connect {name}'")
    return decision


def _agent_refusal(core: Core, claims: dict[str, Any]) -> str | None:
    """Why the token's agent may not call now (gone or disabled), else None. Its
    credentials end when it is revoked; this refuses even a token that slipped by."""
    act = claims.get("act")
    actor = act.get("sub") if isinstance(act, dict) else None
    if not isinstance(actor, str) or not actor.startswith("agent:"):
        return "the credential names no agent (act)"
    agent = core.store.agent(actor.removeprefix("agent:"))
    if agent is None:
        return f"{actor[:80]} no longer exists"
    if agent.disabled_at is not None:
        return f"{actor} is disabled"
    return None


def _audience(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else [a for a in aud or [] if isinstance(a, str)]


def _check_route(decision: Decision, integ: Integration, method: str, raw_path: str) -> Decision:
    try:
        parts = routes.split_path(raw_path)
    except (routes.UnsafePath, UnicodeDecodeError):
        return decision.refuse(403, "unsafe path (dot, empty or encoded-slash segment)")
    found = routes.find(integ.routes, method, parts)
    if found is None:
        return decision.refuse(403, "no route rule allows this call (denied by default)")
    rule, captures = found
    decision.scope = f"{integ.name}:{rule.scope}"
    decision.target = rule.target_for(captures)
    granted = str(decision.claims.get("scope", "")).split()
    if decision.scope not in granted:
        return decision.refuse(403, f"out of scope: needs {decision.scope}")
    return _check_target(decision)


def _check_target(decision: Decision) -> Decision:
    held = decision.claims.get("target")
    wanted = decision.target
    if wanted is not None:
        try:
            validate.target(wanted)
        except validate.InvalidInput:
            return decision.refuse(403, "the call's target is not a valid resource name")
    if held is None:
        return decision  # no target on the credential: its scopes are the whole limit
    # Targets are names, compared as GitHub does: case-insensitively.
    if wanted is None or str(held).lower() != wanted.lower():
        return decision.refuse(403, f"out of target: the credential is for {held}")
    return decision
