"""What each dashboard page shows, as JSON: built from the daemon's own state.

Every function returns plain data for the page's script to render; none of it is
a secret (credentials appear by ``jti`` only, integrations without their upstream
keys, command lines redacted by ``processes``). Scopes are given with the words
the consent page uses for them (``Integration.describe``).
"""

from __future__ import annotations

import time
from typing import Any

from kontext.common.events import EVENTS
from kontextd.consent import grants as consent_grants
from kontextd.core import Core
from kontextd.dashboard import processes, selection
from kontextd.dashboard.activity import MINUTE, SERIES, WINDOW, Activity
from kontextd.gateway import connections
from kontextd.oauth.state import for_core
from kontextd.policy import admin as policy_admin
from kontextd.store import audit_sql, dashboard_sql
from kontextd.store.rows import AgentRow, CredentialRow


def scope_words(core: Core, scopes: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    """Each ``integration:scope`` with its integration's name and the consent page's words."""
    out = []
    for scope in scopes:
        name, _, rest = scope.partition(":")
        integration = core.config.integrations.get(name)
        out.append(
            {
                "scope": scope,
                "integration": integration.display_name if integration else name,
                "words": integration.describe(rest) if integration else scope,
            }
        )
    return out


def agent_status(agent: AgentRow) -> tuple[str, str | None]:
    """``active``, ``revoked`` or ``disabled``, and why."""
    if agent.disabled_at is None:
        return "active", None
    reason = agent.disabled_reason or ""
    return ("revoked" if "revoked" in reason else "disabled"), reason or None


def overview(core: Core, activity: Activity) -> dict[str, Any]:
    """One row per agent: status, permissions, live credentials, last call, the last hour."""
    now = time.time()
    live: dict[str, list[CredentialRow]] = {}
    agents = core.store.agents()
    conn = audit_sql.open_readonly(core.store.path)
    try:
        for cred in dashboard_sql.live_credentials(conn):
            live.setdefault(cred.agent, []).append(cred)
        spark, last_calls = activity.snapshot(conn, now)
    finally:
        conn.close()
    rows: list[dict[str, Any]] = []
    totals = dict.fromkeys(SERIES, 0)
    for agent in agents:
        status, reason = agent_status(agent)
        creds = live.get(agent.name, [])
        series = spark.get(f"agent:{agent.name}") or {name: [0] * WINDOW for name in SERIES}
        for key in totals:
            totals[key] += sum(series[key])
        rows.append(
            {
                "id": f"agent:{agent.name}",
                "name": agent.name,
                "display_name": agent.display_name,
                "status": status,
                "status_reason": reason,
                "permissions": scope_words(core, agent.scopes),
                "max_ttl": agent.max_ttl,
                "live": len(creds),
                "soonest_expiry": min((c.expires_at for c in creds), default=None),
                "last_call": last_calls.get(f"agent:{agent.name}"),
                "activity": series,
            }
        )
    return {
        "now": now,
        "user": core.user,
        "agents": rows,
        "totals": {"agents": len(agents), "live": sum(len(v) for v in live.values()), **totals},
        "bucket_seconds": MINUTE,
    }


def _live(core: Core) -> list[CredentialRow]:
    conn = audit_sql.open_readonly(core.store.path)
    try:
        return dashboard_sql.live_credentials(conn)
    finally:
        conn.close()


def credentials(core: Core) -> dict[str, Any]:
    """Every live credential with the process that holds it."""
    rows = []
    for cred in _live(core):
        agent = core.store.agent(cred.agent)
        pid = cred.child_pid or cred.wrapper_pid
        started = cred.child_start if cred.child_pid else None
        rows.append(
            {
                "jti": cred.jti,
                "agent": f"agent:{cred.agent}",
                "agent_display": agent.display_name if agent else cred.agent,
                "scopes": scope_words(core, cred.scopes),
                "target": cred.target,
                "pid": pid,
                "process": "child" if cred.child_pid else "wrapper",
                "command": processes.command_line(pid, started),
                "issued_at": cred.issued_at,
                "expires_at": cred.expires_at,
                "parent": cred.parent,  # the credential or token it was exchanged from
                "kind": cred.kind,  # exec, exchange (RFC 8693) or code (consent)
                "client_id": cred.client_id,
            }
        )
    return {"now": time.time(), "credentials": rows}


def grants(core: Core) -> dict[str, Any]:
    """The live consent grants of the current session."""
    listing = consent_grants.listing(core)
    resting: dict[str, int] = {}
    for cred in _live(core):
        if cred.grant_id is not None:
            resting[cred.grant_id] = resting.get(cred.grant_id, 0) + 1
    rows = []
    for grant in listing["grants"]:
        name = grant["agent"].removeprefix("agent:")
        agent = core.store.agent(name)
        rows.append(
            {
                **grant,
                "agent_display": agent.display_name if agent else name,
                "scopes": scope_words(core, grant["scopes"]),
                "live": resting.get(grant["id"], 0),  # credentials that end with it
            }
        )
    session = for_core(core).db.current_session()
    if session is not None and session.local:
        session = None  # the local account's own session row: no sign-in to name
    return {
        "now": time.time(),
        "user": listing["user"],
        "session": None if session is None else {"issuer": session.issuer, "user": session.user},
        "grants": rows,
    }


def integrations(core: Core) -> dict[str, Any]:
    """Connected or not, how, delivery mode and route rules — never the secret."""
    rows = []
    for item in connections.listing(core):
        integration = core.config.integrations[item["name"]]
        rows.append(
            {
                "name": item["name"],
                "display_name": item["display_name"],
                "connected": item["connected"],
                "method": item["method"],
                "connected_at": item["connected_at"],
                "delivery": item["delivery"],
                "base_url": item["base_url"],
                "env": item["env"],
                "scopes": [
                    {"scope": f"{item['name']}:{k}", "words": v} for k, v in item["scopes"].items()
                ],
                "routes": [
                    {"rule": rule.text, "scope": rule.scope, "target": rule.target}
                    for rule in integration.routes
                ],
            }
        )
    return {"integrations": rows}


def policy(core: Core) -> dict[str, Any]:
    """The loaded Cedar files, their policies and every error; agents for the form."""
    status = policy_admin.check(core)
    return {
        **status,
        "agents": [
            {"id": f"agent:{a.name}", "name": a.name, "scopes": list(a.scopes)}
            for a in core.store.agents()
        ],
        "scopes": [
            f"{name}:{scope}"
            for name, integration in sorted(core.config.integrations.items())
            for scope in integration.scopes
        ],
    }


def filters(core: Core) -> dict[str, Any]:
    """The Activity page's choices: agents, event names, outcomes."""
    return {
        "agents": [a.name for a in core.store.agents()],
        "events": sorted(EVENTS),
        "outcomes": [*selection.OUTCOMES, "other"],
    }
