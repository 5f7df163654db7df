"""What the dashboard's buttons do: the same operations as the CLI, audited ``via: dashboard``.

Each action validates its JSON body (one ``invalid`` line for anything wrong, and
nothing changes), calls the daemon's own operation — ``credentials.revoke_credential``,
``credentials.revoke_agent`` (with ``kill``), the consent store's grant revocation,
``policy.admin.explain`` — inside ``audit.context.via("dashboard")``, and answers
with what happened in one sentence for the page to show.
"""

from __future__ import annotations

import re
from typing import Any

from kontextd import agents, credentials
from kontextd.audit.context import via
from kontextd.consent import grants
from kontextd.core import Core
from kontextd.errors import invalid, not_found
from kontextd.oauth.state import for_core
from kontextd.policy import admin as policy_admin

VIA = "dashboard"
GRANT_ID = re.compile(r"[A-Za-z0-9_-]{8,100}")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def revoke_credential(core: Core, body: dict[str, Any]) -> dict[str, Any]:
    """End one live credential now."""
    jti = body.get("jti")
    if not isinstance(jti, str):
        raise invalid("jti must be the credential's id")
    with via(VIA):
        result = credentials.revoke_credential(core, jti)  # validates the jti
    if result["revoked"]:
        message = (
            f"Revoked credential {jti} (and any exchanged from it); "
            "its process's next call is refused."
        )
    else:
        message = f"Credential {jti} had already ended ({result['status']})."
    return {**result, "message": message}


def revoke_agent(core: Core, body: dict[str, Any]) -> dict[str, Any]:
    """Revoke an agent: disable it and end its live credentials; with ``kill`` also
    stop their processes."""
    name = agents.name_from(str(body.get("agent", "")).removeprefix("agent:"))
    kill = body.get("kill", False)
    if not isinstance(kill, bool):
        raise invalid("kill must be true or false")
    with via(VIA):
        result = credentials.revoke_agent(
            core, name, kill=kill, reason=f"revoked by {core.user} from the dashboard"
        )
    message = f"Revoked agent:{name}: {_plural(len(result['revoked']), 'live credential')} ended"
    if kill:
        message += f", {_plural(len(result['killed']), 'process')} stopped"
    message += f". Other agents keep running; undo with 'kontext agent enable {name}'."
    return {**result, "message": message}


def revoke_grant(core: Core, body: dict[str, Any]) -> dict[str, Any]:
    """Withdraw one consent grant: the agent's next exec needs consent again."""
    grant_id = body.get("grant")
    if not isinstance(grant_id, str) or not GRANT_ID.fullmatch(grant_id):
        raise invalid("grant must be a grant id as the Consent grants page shows it")
    db = for_core(core).db
    found = next((g for g in db.live_grants(None) if g.id == grant_id), None)
    if found is None:
        raise not_found(f"no live grant {grant_id}: it was revoked or has expired")
    resting = [c.jti for c in core.store.live_credentials(found.agent) if c.grant_id == grant_id]
    with via(VIA):  # the credentials resting on it end with it, audited
        reason = f"revoked by {core.user} from the dashboard"
        ids = grants.revoke(core, reason, grant_id=grant_id, agent=found.agent)
    ended = f"{_plural(len(resting), 'live credential')} resting on it ended"
    return {
        "grant": grant_id,
        "agent": f"agent:{found.agent}",
        "revoked": bool(ids),
        "ended": resting,
        "message": f"Revoked the grant to agent:{found.agent}: {ended}; "
        "its next exec asks for consent again.",
    }


def explain(core: Core, body: dict[str, Any]) -> dict[str, Any]:
    """``kontext policy explain``'s dry run: every layer's verdict; nothing is minted."""
    unknown = set(body) - {"agent", "scopes", "target", "ttl"}
    if unknown:
        raise invalid(f"unknown field {sorted(unknown)[0]!r}: send agent, scopes, target, ttl")
    agent = body.get("agent")
    if isinstance(agent, str):
        body = {**body, "agent": agent.removeprefix("agent:")}
    # A browser is no process of the user's: the dry run is of a request made without
    # a terminal (policies reading ``context.interactive`` see false).
    return policy_admin.explain(core, body, None)


def consequences(core: Core, name: str) -> dict[str, Any]:
    """What revoking ``agent:name`` would end, for the page's one question before it does."""
    agent = agents.get(core, name)
    live = core.store.live_credentials(agent.name)
    processes = {c.child_pid or c.wrapper_pid for c in live} - {None}
    return {
        "agent": f"agent:{agent.name}",
        "live": len(live),
        "processes": len(processes),
        "others_running": sum(1 for c in core.store.live_credentials() if c.agent != agent.name),
    }
