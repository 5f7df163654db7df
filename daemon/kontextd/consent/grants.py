"""Consent grants: one approval on the consent page, for one agent, in one session.

A grant is created when the consent request's code is redeemed (so only the
party holding the PKCE verifier — the CLI that asked — turns an approval into a
grant), lasts what the page said (default 1 hour), and ends with the session.
"""

from __future__ import annotations

import time
from typing import Any

from kontextd.core import Core
from kontextd.errors import invalid, not_found
from kontextd.oauth import events, issue
from kontextd.oauth.state import Code, for_core
from kontextd.store.oauth_sql import GrantRow

LOCAL_SESSION = "local"


def session_id(core: Core) -> str:
    """The current login session's id, or ``local`` for the daemon's own account."""
    session = for_core(core).db.current_session()
    return session.id if session is not None and session.ended_at is None else LOCAL_SESSION


def from_code(core: Core, code: Code) -> dict[str, Any]:
    """Redeem a consent code: record the grant, answer like a token endpoint."""
    agent = code.client_id.removeprefix("agent:")
    now = time.time()
    grant = GrantRow(
        id=code.family,
        session_id=session_id(core),
        user=code.user,
        agent=agent,
        scopes=code.scopes,
        target=code.target,
        created_at=now,
        expires_at=now + code.duration,
        revoked_at=None,
        revoke_reason=None,
    )
    for_core(core).db.insert_grant(grant)
    events.record(
        core,
        "consent.granted",
        agent={"id": code.client_id},
        scopes=list(code.scopes),
        target=code.target,
        expires_in=f"{code.duration}s",
        grant=grant.id,
    )
    ttl = min(issue.ACCESS_TTL, code.duration)
    token, _ = issue.access_token(
        core,
        user=code.user,
        client_id=code.client_id,
        scopes=code.scopes,
        audience=sorted({s.partition(":")[0] for s in code.scopes}),
        family=grant.id,
        ttl=ttl,
        act={"sub": code.client_id},
        target=code.target,
    )
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": " ".join(code.scopes),
        "grant_id": grant.id,
        "grant_expires_in": code.duration,
    }


def covering(
    core: Core, user: str, agent: str, scopes: tuple[str, ...], target: str | None
) -> GrantRow | None:
    """A live grant of this session covering every scope and the target, if any."""
    current = session_id(core)
    for grant in for_core(core).db.live_grants(user, agent):
        if grant.session_id != current:
            continue
        if set(scopes) <= set(grant.scopes) and grant.target in (None, target):
            return grant
    return None


def approved_scopes(core: Core, user: str, agent: str) -> tuple[str, ...]:
    current = session_id(core)
    scopes: dict[str, None] = {}
    for grant in for_core(core).db.live_grants(user, agent):
        if grant.session_id == current:
            scopes.update(dict.fromkeys(grant.scopes))
    return tuple(scopes)


def listing(core: Core) -> dict[str, Any]:
    current = session_id(core)
    rows = [g for g in for_core(core).db.live_grants(core.user) if g.session_id == current]
    return {
        "user": core.user,
        "grants": [
            {
                "id": g.id,
                "agent": f"agent:{g.agent}",
                "scopes": list(g.scopes),
                "target": g.target,
                "created_at": g.created_at,
                "expires_at": g.expires_at,
            }
            for g in rows
        ],
    }


def revoke_agent(core: Core, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str) or not raw.startswith("agent:"):
        raise invalid("name the agent as agent:NAME")
    name = raw.removeprefix("agent:")
    if core.store.agent(name) is None:
        raise not_found(f"no agent named {name}")
    ids = for_core(core).db.revoke_grants(f"revoked by {core.user}", agent=name)
    if ids:  # a repeated revoke changes nothing, so it records nothing
        events.record(core, "consent.revoked", agent={"id": raw}, grants=ids)
    return {"agent": raw, "revoked": ids}
