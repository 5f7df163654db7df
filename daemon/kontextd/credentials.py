"""Credentials: issue through the request path, end them (lease closed, revoked, expired).

A credential lives exactly as long as the ``kontext exec`` that holds its lease:
the control connection that asked for it. When that connection closes — the child
exited, or the wrapper died, even by SIGKILL, since the kernel closes its socket —
the daemon revokes the credential.

``issue`` is the one place a token acting for an agent is minted: exec, RFC 8693
exchange (``kontextd.oauth.exchange``) and consent codes (``kontextd.consent.grants``)
all pass the same request path, store and audit it the same way; how each ends
(with its parent, its grant, its agent, on time) is ``kontextd.credential_end``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kontext.common import wire
from kontextd import agents, exec_tree
from kontextd.core import Core
from kontextd.credential_end import (  # the callers of these ask ``credentials``
    end,
    end_agent_grants,
    end_all,
    end_descendants,
    end_under_grants,
    expire_due,
    revoke_orphans,
)
from kontextd.errors import ApiError, invalid, not_found
from kontextd.exec_request import Issued, all_env_names, build_request, release_reason
from kontextd.gateway import delivery
from kontextd.jsonenc import COMPACT
from kontextd.policy.layers import USER_CONSENT, denial_message, evaluate_layers
from kontextd.policy.request import CredentialRequest, PathResult
from kontextd.store.rows import CODE, EXCHANGE, EXEC, MCP, CredentialRow
from kontextd.tokens.mint import mint

log = logging.getLogger("kontextd.credentials")


def _event(request: CredentialRequest, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": name,
        "agent": agents.agent_ref(request.agent, request.agent_name),
        "user": {"id": request.user},
        "integration": ",".join(request.integrations),
        "scopes": list(request.scopes),
        "target": request.target,
        **extra,
    }


def evaluate(
    core: Core, body: dict[str, Any], peer_pid: int | None
) -> tuple[CredentialRequest, PathResult]:
    """The request path for an exec body; ``policy explain`` calls this very function."""
    request = build_request(core, body, peer_pid)
    return request, evaluate_layers(core.layers, request)


@dataclass(frozen=True)
class Origin:
    """How a credential comes to be, besides what it asks for: which path minted it
    (``exec``, ``exchange``, ``code``), the OAuth client that asked (``agent:NAME``
    unless said), the parent it was exchanged from (a credential's or the user's
    token's jti) with the seconds that parent has left, the parent's RFC 8693 actor
    chain, and the RFC 8707 resource the token is for when that is
    not the integrations of its scopes (an MCP server's URL)."""

    kind: str = EXEC
    client_id: str | None = None
    parent: str | None = None
    parent_left: float | None = None
    act: dict[str, Any] | None = None
    audience: tuple[str, ...] | None = None

    @property  # a fresh dict of at most three fields: cheaper than cached_property's lock
    def audit_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"kind": self.kind}
        if self.parent is not None:
            fields["parent"] = self.parent
        if self.client_id is not None:
            fields["client_id"] = self.client_id
        return fields


class Refused(ApiError):
    """The request path refused; ``layer`` is the layer named in the message."""

    def __init__(self, code: str, message: str, layer: str) -> None:
        super().__init__(code, message)
        self.layer = layer


@dataclass(frozen=True)
class Credential:
    """A credential just minted: its stored row, the signed token and its claims.
    ``repr`` hides the token."""

    row: CredentialRow
    token: str
    claims: dict[str, Any]

    def __repr__(self) -> str:
        return f"Credential(jti={self.row.jti!r}, token=<redacted>)"


def actor_chain(agent: str, prior: dict[str, Any] | None) -> dict[str, Any]:
    """RFC 8693 §4.1: the current actor on top, each earlier one nested under it."""
    act: dict[str, Any] = {"sub": f"agent:{agent}"}
    if prior is not None:
        act["act"] = prior
    return act


def _lifetime(request: CredentialRequest, origin: Origin, result: PathResult, now: int) -> int:
    """The TTL asked for, never beyond the parent's remaining life nor the grant's
    (and its session's) end: a credential dies no later than what it rests on."""
    ttl = float(request.ttl)
    if origin.parent_left is not None:
        ttl = min(ttl, origin.parent_left)
    until = result.until
    if until is not None:
        ttl = min(ttl, until - now)
    return max(1, math.floor(ttl))


def _asked(request: CredentialRequest, ttl: int) -> dict[str, str]:
    """``ttl_asked`` when the lifetime was cut short (by the parent, the grant or its
    session), so the event keeps what the request asked for beside what it got."""
    return {"ttl_asked": f"{request.ttl}s"} if ttl < request.ttl else {}


def _refuse(
    core: Core, request: CredentialRequest, origin: Origin, result: PathResult, evaluation: Any
) -> Refused:
    # Name another layer's refusal first: consent is asked only for what the
    # org and the agent's permissions allow (see kontextd.consent.layer).
    others = [
        v for v in result.verdicts if not v.allowed and (v.layer != USER_CONSENT or not v.askable)
    ]
    named = PathResult(tuple(others)) if others else result
    message = denial_message(named)
    with core.store.transaction() as tx:
        tx.append_event(
            _event(
                request, "credential.denied", reason=message, **origin.audit_fields, **evaluation
            )
        )
    layer = named.first_denial.layer if named.first_denial else USER_CONSENT
    return Refused(wire.DENIED if others else wire.CONSENT_REQUIRED, message, layer)


EXEC_ORIGIN = Origin()


def issue(
    core: Core,
    request: CredentialRequest,
    origin: Origin = EXEC_ORIGIN,
    on_allow: Callable[[], dict[str, Any]] | None = None,
    wrapper_pid: int | None = None,
) -> Credential:
    """The one place a token acting for an agent is minted (DESIGN.md rule 8).

    Runs the request path; on allow mints, stores (with parent, grant, client and
    how it was minted) and audits one credential, all in one transaction; on deny
    audits the refusal and raises ``Refused``. exec, RFC 8693 exchange and consent
    codes all come through here with their own ``origin``. ``on_allow`` runs only
    once every layer allowed (exec prepares the child's delivery there) and returns
    fields for the ``credential.issued`` event. ``wrapper_pid``: exec's wrapper, the
    lease holder."""
    core.secrets_check()
    result = evaluate_layers(core.layers, request)
    evaluation = {
        "policy_evaluation": result.summary(),
        "reasons": result.reasons(),
        "policy_ids": result.policy_ids(),
    }
    if not result.allowed:
        refused = _refuse(core, request, origin, result, evaluation)
        if request.agent is None:  # audited as denied; said as what it is: a wrong name
            raise agents.unknown(core, request.agent_name)
        raise refused
    audit = on_allow() if on_allow is not None else {}
    key = core.keys.active()
    now = int(time.time())
    ttl = _lifetime(request, origin, result, now)
    act = actor_chain(request.agent_name, origin.act)
    client_id = origin.client_id or f"agent:{request.agent_name}"
    audience = origin.audience or request.integrations
    minted = mint(
        key,
        issuer=core.issuer,
        user=request.user,
        act=act,
        client_id=client_id,
        audience=list(audience),
        scopes=list(request.scopes),
        target=request.target,
        issued_at=now,
        ttl=ttl,
    )
    row = CredentialRow(
        jti=minted.jti,
        agent=request.agent_name,
        user=request.user,
        scopes=request.scopes,
        audience=tuple(audience),
        target=request.target,
        kid=key.kid,
        issued_at=now,
        expires_at=now + ttl,
        status="live",
        wrapper_pid=wrapper_pid,
        kind=origin.kind,
        client_id=client_id,
        parent=origin.parent,
        grant_id=result.grant_id,
        act=None if origin.act is None else COMPACT.encode(act),
    )
    with core.store.transaction() as tx:
        tx.insert_credential(row)
        tx.append_event(
            _event(
                request,
                "credential.issued",
                jti=minted.jti,
                expires_in=f"{ttl}s",
                **_asked(request, ttl),
                pid=wrapper_pid,
                grant=result.grant_id,
                **origin.audit_fields,
                **audit,
                **evaluation,
            )
        )
    return Credential(row, minted.token, minted.claims)


def issue_for_exec(
    core: Core, body: dict[str, Any], wrapper_pid: int | None
) -> tuple[str, dict[str, Any]]:
    """``POST /v1/credentials``: (jti, the JSON answer), for the loop and the handler alike."""
    request = build_request(core, body, wrapper_pid)
    prepared: list[delivery.ChildValues] = []

    def deliver() -> dict[str, Any]:
        # Token mode may ask the provider for a token: only once the layers allowed.
        prepared.append(delivery.for_child(core, request.integrations))
        return {"delivery": prepared[0].modes}

    cred = issue(core, request, EXEC_ORIGIN, deliver, wrapper_pid)
    child = prepared[0]
    issued = Issued(
        jti=cred.row.jti,
        token=cred.token,
        expires_at=int(cred.row.expires_at),
        env_names=child.token_env,
        strip_env=all_env_names(core),
        scopes=list(request.scopes),
        audience=list(request.integrations),
        env_values=child.values,
        warnings=child.warnings,
    )
    answer = issued.to_json(request.agent_name)
    # The loopback issuer, for RFC 8693 exchange of this token: a confined child
    # cannot read the runtime dir where the port is published.
    answer["env_values"] = {**answer["env_values"], wire.ENV_URL: core.issuer}
    # A CI token for kontext's audience, in a variable exec's list cannot name: stripped too.
    answer["strip_audience"] = core.config.ci.audience
    agent = core.store.agent(request.agent_name)
    answer["confine"] = {
        "mode": core.config.exec_confine,
        "session_bus": bool(agent and agent.session_bus),
    }
    return issued.jti, answer


def revoke_credential(core: Core, jti: str) -> dict[str, Any]:
    if (
        not isinstance(jti, str)
        or not 10 <= len(jti) <= 64
        or not jti.replace("-", "").replace("_", "").isalnum()
    ):
        raise invalid("invalid credential id: use a jti from 'kontext credential list'")
    cred = core.store.credential(jti)
    if cred is None:
        raise not_found(f"no credential {jti}; see 'kontext credential list'")
    if end(core, jti, "revoked", f"revoked by {core.caller_name()}"):
        return {"jti": jti, "revoked": True, "status": "revoked"}
    ended = core.store.credential(jti) or cred  # it had ended already: say how and when
    return {
        "jti": jti,
        "revoked": False,
        "status": ended.status,
        "reason": ended.end_reason,
        "ended_at": ended.ended_at,
    }


def revoke_agent(core: Core, name: str, *, kill: bool, reason: str) -> dict[str, Any]:
    """Disable the agent, revoke its live credentials at once, optionally kill its processes."""
    agent = agents.get(core, name)
    with core.store.transaction() as tx:
        tx.set_agent_disabled(agent.name, reason)
        tx.append_event(
            {
                "event": "agent.revoked",
                "agent": agents.agent_ref(agent, agent.name),
                "user": core.user_ref(),
                "reason": reason,
                "kill": kill,
            }
        )
    live = core.store.live_credentials(agent.name)
    revoked = end_all(core, live, "revoked", f"agent revoked: {reason}")
    end_agent_grants(core, agent.name, f"agent revoked: {reason}")
    killed = exec_tree.kill_trees(core, agent.name) if kill else []
    return {"agent": f"agent:{agent.name}", "revoked": revoked, "killed": killed}


def delete_agent(core: Core, name: str) -> dict[str, Any]:
    agent = agents.get(core, name)
    end_all(core, core.store.live_credentials(agent.name), "revoked", "agent deleted")
    end_agent_grants(core, agent.name, "agent deleted", clients_only=False)
    with core.store.transaction() as tx:
        tx.delete_agent(agent.name)
        tx.append_event(
            {
                "event": "agent.deleted",
                "agent": agents.agent_ref(agent, agent.name),
                "user": core.user_ref(),
            }
        )
    return {"agent": f"agent:{agent.name}", "deleted": True}


__all__ = [
    "CODE",
    "EXCHANGE",
    "EXEC",
    "MCP",
    "Credential",
    "Issued",
    "Origin",
    "Refused",
    "build_request",
    "end",
    "end_all",
    "end_descendants",
    "end_under_grants",
    "expire_due",
    "issue",
    "issue_for_exec",
    "release_reason",
    "revoke_orphans",
]
