"""Agent identities: create, list, show, delete, disable, enable."""

from __future__ import annotations

import difflib
from typing import Any

from kontext.common import validate, wire
from kontextd.core import Core
from kontextd.errors import ApiError, invalid, not_found
from kontextd.store.rows import AgentRow

DEFAULT_MAX_TTL = 3600
MAX_DISPLAY_NAME = 64


def agent_ref(agent: AgentRow | None, name: str) -> dict[str, str]:
    """The ``agent`` object of audit events."""
    return {"id": f"agent:{name}", "name": agent.display_name if agent else name}


def to_json(agent: AgentRow, live: int = 0) -> dict[str, Any]:
    return {
        "id": f"agent:{agent.name}",
        "name": agent.name,
        "display_name": agent.display_name,
        "scopes": list(agent.scopes),
        "max_ttl": agent.max_ttl,
        "created_at": agent.created_at,
        "disabled": agent.disabled_at is not None,
        "disabled_reason": agent.disabled_reason,
        "live_credentials": live,
        "session_bus": agent.session_bus,
    }


def _display_name(raw: Any, name: str) -> str:
    if raw is None:
        return " ".join(part.capitalize() for part in name.split("-"))
    if (
        not isinstance(raw, str)
        or not raw.strip()
        or len(raw) > MAX_DISPLAY_NAME
        or not raw.isprintable()
    ):
        raise invalid(f"invalid display name: use 1-{MAX_DISPLAY_NAME} printable characters")
    return raw.strip()


def check_scopes(core: Core, raw: Any, *, field_name: str) -> list[str]:
    """Validate ``integration:scope`` strings against the catalogue."""
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise invalid(f"{field_name} must be a list of INTEGRATION:SCOPE strings")
    out: list[str] = []
    for item in raw:
        try:
            integration_name, scope = validate.scope(item)
        except validate.InvalidInput as exc:
            raise invalid(str(exc)) from exc
        integration = core.config.integrations.get(integration_name)
        if integration is None:
            known = ", ".join(sorted(core.config.integrations))
            raise invalid(f"unknown integration {integration_name!r} in {item}: known are {known}")
        if scope not in integration.scopes:
            offered = ", ".join(integration.scopes)
            raise invalid(f"unknown scope {item}: {integration_name} offers {offered}")
        if item not in out:
            out.append(item)
    return out


def name_from(raw: Any) -> str:
    if not isinstance(raw, str):
        raise invalid("agent name must be a string")
    try:
        return validate.agent_name(raw)
    except validate.InvalidInput as exc:
        raise invalid(str(exc)) from exc


def create(core: Core, body: dict[str, Any]) -> dict[str, Any]:
    name = name_from(body.get("name"))
    scopes = check_scopes(core, body.get("allow"), field_name="allow")
    if not scopes:
        raise invalid("an agent needs at least one --allow INTEGRATION:SCOPE")
    display = _display_name(body.get("display_name"), name)
    session_bus = body.get("session_bus", False)
    if not isinstance(session_bus, bool):
        raise invalid("session_bus must be true or false")
    max_ttl = body.get("max_ttl", DEFAULT_MAX_TTL)
    if not isinstance(max_ttl, int) or isinstance(max_ttl, bool):
        raise invalid("max_ttl must be a number of seconds")
    if not validate.MIN_TTL <= max_ttl <= validate.MAX_TTL:
        raise invalid(
            f"max TTL must be between {validate.format_duration(validate.MIN_TTL)} "
            f"and {validate.format_duration(validate.MAX_TTL)}"
        )
    with core.store.transaction() as tx:
        if tx.agent(name) is not None:
            raise ApiError(wire.CONFLICT, f"agent:{name} already exists; pick another name")
        tx.insert_agent(name, display, max_ttl, scopes, session_bus)
        agent = tx.agent(name)
        assert agent is not None
        tx.append_event(
            {
                "event": "agent.created",
                "agent": agent_ref(agent, name),
                "user": core.user_ref(),
                "scopes": scopes,
                "max_ttl": f"{max_ttl}s",
                "session_bus": session_bus,
            }
        )
    return to_json(agent)


def get(core: Core, name: str) -> AgentRow:
    agent = core.store.agent(validate_name(name))
    if agent is None:
        raise unknown(core, name)
    return agent


def unknown(core: Core, name: str) -> ApiError:
    """``not_found`` for an agent that does not exist, with the nearest names if any."""
    known = [a.name for a in core.store.agents()]
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if near:
        hint = "did you mean " + " or ".join(f"agent:{n}" for n in near) + "?"
    else:
        hint = "see 'kontext agent list'"
    return not_found(f"no agent named {name}; {hint}")


def validate_name(name: str) -> str:
    try:
        return validate.agent_name(name)
    except validate.InvalidInput as exc:
        raise invalid(str(exc)) from exc


def show(core: Core, name: str) -> dict[str, Any]:
    agent = get(core, name)
    return to_json(agent, live=len(core.store.live_credentials(agent.name)))


def listing(core: Core) -> dict[str, Any]:
    live: dict[str, int] = {}
    for cred in core.store.live_credentials():
        live[cred.agent] = live.get(cred.agent, 0) + 1
    return {"agents": [to_json(a, live.get(a.name, 0)) for a in core.store.agents()]}


def set_enabled(core: Core, name: str, enabled: bool) -> dict[str, Any]:
    agent = get(core, name)
    with core.store.transaction() as tx:
        tx.set_agent_disabled(agent.name, None if enabled else "disabled by user")
        tx.append_event(
            {
                "event": "agent.enabled" if enabled else "agent.disabled",
                "agent": agent_ref(agent, agent.name),
                "user": core.user_ref(),
            }
        )
    return show(core, agent.name)


def set_session_bus(core: Core, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Allow or deny an agent's confined exec the session D-Bus (the Secret Service)."""
    agent = get(core, name)
    allowed = body.get("session_bus")
    if not isinstance(allowed, bool):
        raise invalid("session_bus must be true or false")
    with core.store.transaction() as tx:
        tx.set_agent_session_bus(agent.name, allowed)
        tx.append_event(
            {
                "event": "agent.changed",
                "agent": agent_ref(agent, agent.name),
                "user": core.user_ref(),
                "session_bus": allowed,
            }
        )
    return show(core, agent.name)
