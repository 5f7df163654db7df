"""Consent grants: one approval on the consent page, for one agent, in one session.

A grant is created when the consent request's code is redeemed (so only the
party holding the PKCE verifier — the CLI that asked — turns an approval into a
grant), lasts what the page said (default 1 hour) but never beyond the session
it was approved in, and every credential resting on it ends with it.
"""

from __future__ import annotations

import time
from typing import Any

from kontextd import agents, credentials
from kontextd.consent.layer import NO_SESSION, effective_expiry, session_end, session_id
from kontextd.core import Core
from kontextd.errors import invalid
from kontextd.oauth import events
from kontextd.oauth.clients import OAuthError
from kontextd.oauth.issue import ACCESS_TTL
from kontextd.oauth.state import Code, for_core
from kontextd.policy.request import CredentialRequest
from kontextd.store.oauth_sql import GrantRow


def record(core: Core, code: Code) -> tuple[GrantRow, float]:
    """Turn a redeemed consent code into a grant of the current session, audited;
    returns it with its effective expiry (it never outlives its session)."""
    db = for_core(core).db
    current = session_id(db)
    if code.session != current or current == NO_SESSION:
        # Approved in a session that has ended since (a logout, a new login): the
        # approval ended with it (README "Sessions and grants").
        raise OAuthError(
            "invalid_grant", "the session this was approved in has ended: approve it again"
        )
    now = time.time()
    public = code.agent is not None  # an MCP client's code names the agent it chose
    grant = GrantRow(
        id=code.family,
        session_id=current,
        user=code.user,
        agent=code.agent or code.client_id.removeprefix("agent:"),
        scopes=code.scopes,
        target=code.target,
        created_at=now,
        expires_at=now + code.duration,
        revoked_at=None,
        revoke_reason=None,
        client_id=code.client_id if public else None,
        client_name=code.client_name,
        resource=code.resource,
    )
    db.insert_grant(grant)
    until = effective_expiry(grant, session_end(db))
    client = (
        {"client_id": code.client_id, "client_name": code.client_name, "resource": code.resource}
        if public
        else {}
    )
    events.record(
        core,
        "consent.granted",
        agent={"id": f"agent:{grant.agent}"},
        **client,
        scopes=list(code.scopes),
        target=code.target,
        expires_in=f"{code.duration}s",
        effective_expires_in=f"{max(0, int(until - now))}s",
        grant=grant.id,
        session=grant.session_id,
    )
    return grant, until


def answer(grant: GrantRow, until: float) -> dict[str, Any]:
    """A grant as the control API shows it (``consent grant``'s answer)."""
    return {
        "grant": grant.id,
        "agent": f"agent:{grant.agent}",
        "scopes": list(grant.scopes),
        "target": grant.target,
        "expires_at": until,  # the effective expiry: never beyond the session's end
        "asked_expires_at": grant.expires_at,
        "expires_in": max(0, int(until - time.time())),
    }


def from_code(core: Core, code: Code) -> dict[str, Any]:
    """``/token``'s code grant for an agent client: record the grant and answer like a
    token endpoint, with a credential minted through the request path."""
    grant, until = record(core, code)
    agent = core.store.agent(grant.agent)
    request = CredentialRequest(
        agent_name=grant.agent,
        agent=agent,
        user=code.user,
        scopes=code.scopes,
        target=code.target,
        ttl=min(ACCESS_TTL, agent.max_ttl if agent else ACCESS_TTL),
        ttl_explicit=False,
        issuer=core.login_issuer,  # daemon-established facts only (policy/facts.py)
        external_login=core.login_external,
    )
    try:
        cred = credentials.issue(
            core, request, credentials.Origin(kind=credentials.CODE, client_id=code.client_id)
        )
    except credentials.Refused as exc:
        # Org policy or the agent's permissions changed since the page: the approval
        # cannot stand for something the request path now refuses.
        revoke(core, f"refused at redemption: {exc.message}", grant_id=grant.id)
        raise OAuthError("invalid_request", exc.message, extra={"denied_by": exc.layer}) from exc
    return {
        "access_token": cred.token,
        "token_type": "Bearer",
        "expires_in": int(cred.row.expires_at - cred.row.issued_at),
        "scope": " ".join(code.scopes),
        "grant_id": grant.id,
        "grant_expires_in": max(0, int(until - time.time())),
    }


def listing(core: Core) -> dict[str, Any]:
    """The live grants of the current session, with their effective expiry."""
    db = for_core(core).db
    current, ends = session_id(db), session_end(db)
    rows = [g for g in db.live_grants(core.user) if g.session_id == current]
    return {
        "user": core.user,
        "session": current,
        "grants": [
            {
                "id": g.id,
                "agent": f"agent:{g.agent}",
                "scopes": list(g.scopes),
                "target": g.target,
                "created_at": g.created_at,
                "expires_at": effective_expiry(g, ends),
                "asked_expires_at": g.expires_at,
                **_client(g),
            }
            for g in rows
        ],
    }


def _client(grant: GrantRow) -> dict[str, Any]:
    """The MCP client a grant was approved for, as it named itself, and its resource."""
    if grant.client_id is None:
        return {}
    return {
        "client": {"id": grant.client_id, "name": grant.client_name},
        "resource": grant.resource,
    }


def revoke(
    core: Core,
    reason: str,
    *,
    agent: str | None = None,
    session: str | None = None,
    grant_id: str | None = None,
    user: str | None = None,
) -> list[str]:
    """Revoke the matching live grants, end every credential resting on them, and
    audit it: one ``consent.revoked`` per agent whose grants ended (its grant ids), so
    ``audit tail --agent X`` shows a grant that a login or logout ended too."""
    db = for_core(core).db
    ids = db.revoke_grants(reason, agent=agent, session_id=session, grant_id=grant_id, user=user)
    by_agent: dict[str | None, list[str]] = {}
    for gid in ids:
        row = db.grant(gid) if agent is None else None
        by_agent.setdefault(agent if row is None else row.agent, []).append(gid)
    for name, group in by_agent.items():
        ended = credentials.end_under_grants(core, group, f"consent revoked: {reason}")
        fields: dict[str, Any] = {
            "grants": group,
            "reason": reason,
            "credentials_revoked": len(ended),
        }
        if name is not None:
            fields["agent"] = {"id": f"agent:{name}"}
        events.record(core, "consent.revoked", **fields)
    return ids


def revoke_agent(core: Core, raw: Any) -> dict[str, Any]:
    """``kontext consent revoke agent:NAME``: every grant to that agent, and what rests on it."""
    if not isinstance(raw, str) or not raw.startswith("agent:"):
        raise invalid("name the agent as agent:NAME")
    name = raw.removeprefix("agent:")
    if core.store.agent(name) is None:
        raise agents.unknown(core, name)  # "did you mean", as every other command says
    ids = revoke(core, f"revoked by {core.user}", agent=name)
    return {"agent": raw, "revoked": ids}
