"""The Activity page's filters: agent, event name, outcome — validated into a selection.

An event's outcome follows from its name alone, so a filter on it is a filter on
names, which the store can apply with an index (``EventSelection``):

- ``allowed``: something was granted or went through (issued, forwarded, approved);
- ``denied``: a layer, the gateway or the loopback port refused something;
- ``ended``: something was revoked, expired, killed or signed out;
- ``other``: everything else (agents created, keys rotated, the daemon started, …).
"""

from __future__ import annotations

from kontext.common import events, validate
from kontextd.errors import invalid
from kontextd.store.dashboard_sql import EventSelection

OUTCOMES: dict[str, frozenset[str]] = {
    "allowed": frozenset(
        {"credential.issued", "api.call", "consent.granted", "session.started", "dashboard.opened"}
    ),
    "denied": frozenset(
        {
            "credential.denied",
            "api.denied",
            "http.refused",
            "control.refused",
            "dashboard.refused",
            "oauth.code_replayed",
            "oauth.refresh_reused",
            "oauth.throttled",
        }
    ),
    "ended": frozenset(
        {
            "credential.revoked",
            "credential.expired",
            "agent.revoked",
            "agent.disabled",
            "agent.deleted",
            "consent.revoked",
            "process.killed",
            "session.ended",
            "integration.disconnected",
            "dashboard.closed",
        }
    ),
}
CATEGORISED = frozenset().union(*OUTCOMES.values())
# What changes the Overview, Live credentials and Consent grants pages (they reload
# their data when one of these arrives).
STATE_EVENTS = frozenset(
    {
        "agent.created",
        "agent.enabled",
        "agent.disabled",
        "agent.revoked",
        "agent.deleted",
        "credential.issued",
        "credential.revoked",
        "credential.expired",
        "process.killed",
        "consent.granted",
        "consent.revoked",
        "session.started",
        "session.ended",
        "api.call",
        "api.denied",
        "credential.denied",
    }
)


def outcome(event: str) -> str:
    for name, members in OUTCOMES.items():
        if event in members:
            return name
    return "other"


def parse(query: dict[str, str]) -> EventSelection:
    """``agent``, ``event``, ``outcome`` and ``scope=state`` query parameters; one
    ``invalid`` line for anything else."""
    agent = query.get("agent") or None
    event = query.get("event") or None
    chosen = query.get("outcome") or None
    if agent is not None:
        try:
            agent = f"agent:{validate.agent_name(agent.removeprefix('agent:'))}"
        except validate.InvalidInput as exc:
            raise invalid(str(exc)) from exc
    names: frozenset[str] | None = None
    if event is not None:
        try:
            names = frozenset({events.check(event)})
        except validate.InvalidInput as exc:
            raise invalid(str(exc)) from exc
    if query.get("scope") == "state":
        names = STATE_EVENTS if names is None else names & STATE_EVENTS
    exclude: frozenset[str] = frozenset()
    if chosen is not None:
        if chosen == "other":
            exclude = CATEGORISED
        elif chosen in OUTCOMES:
            names = OUTCOMES[chosen] if names is None else names & OUTCOMES[chosen]
        else:
            raise invalid(f"outcome must be one of {', '.join([*OUTCOMES, 'other'])}")
    return EventSelection(agent=agent, events=names, exclude=exclude)
