"""The consent page for a public client (an MCP client): who is asking, as whom, for what.

Unlike the CLI's consent requests, this one was not pushed with the user's
client secret: any program on this computer may have started it. The page says
so in plain words, names the program only as it named itself (unverified), lets
the user pick the agent identity it will act as — or create one with exactly
the requested scopes — and then shows the same consent text as
``kontext consent grant``: scopes in words, what is not granted, the resource,
the expiry. Plain HTML, no script; framing and referrers are forbidden by the
headers of ``pages.security_headers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from kontextd.oauth import pages
from kontextd.store.rows import AgentRow

DURATIONS = ((3600, "1 hour"), (8 * 3600, "8 hours"), (86400, "1 day"), (7 * 86400, "7 days"))


@dataclass(frozen=True)
class Ask:
    """What the page shows: the request and the words for it."""

    request_uri: str
    csrf: str
    client_name: str
    client_id: str
    published_at: str | None  # a metadata document's host, if the client named one
    user: str
    resource: str
    granted: list[str]
    refused: list[str]
    integrations: tuple[str, ...] = ()  # display names of the integrations asked for


def consent_page(
    ask: Ask,
    agents: list[AgentRow],
    chosen: str | None,
    new_name: str,
    duration: int,
    error: str | None = None,
) -> str:
    """The page; ``agents`` are those whose permissions cover the scopes asked for."""
    name = escape(ask.client_name)
    where = (
        f" Its description is published at <strong>{escape(ask.published_at)}</strong>, "
        "which does not prove which program is asking."
        if ask.published_at
        else ""
    )
    body = (
        "<h1>An application asks to act as an agent</h1>"
        f'<p class="warn">An application on this computer, <strong>{name}</strong> '
        "<em>(unverified: any program can give itself any name)</em>, asks to act as "
        f"an agent for {escape(ask.user)}.{where} Approve only if you just started "
        "this from that application.</p>"
        + (f'<p class="error" role="alert">{escape(error)}</p>' if error else "")
        + '<form method="post" action="/authorize">'
        + _hidden(ask.request_uri, ask.csrf)
        + "<fieldset><legend>It will act as</legend>"
        + _agent_choices(agents, chosen, new_name)
        + "</fieldset>"
        + _consent_text(ask)
        + _durations(duration)
        + '<p><button type="submit" name="decision" value="approve">Approve</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></p></form>'
        f'<p class="muted">Client id: {escape(ask.client_id)}</p>'
    )
    return pages.page(f"{ask.client_name} asks to act as an agent", body)


def _hidden(request_uri: str, csrf: str) -> str:
    return (
        f'<input type="hidden" name="request_uri" value="{escape(request_uri)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
    )


def _agent_choices(agents: list[AgentRow], chosen: str | None, new_name: str) -> str:
    items = []
    for agent in agents:
        checked = " checked" if agent.name == chosen else ""
        items.append(
            f'<label><input type="radio" name="agent" value="{escape(agent.name)}"{checked}>'
            f"{escape(agent.display_name)} (agent:{escape(agent.name)})</label>"
        )
    checked = " checked" if chosen is None or chosen not in {a.name for a in agents} else ""
    items.append(
        f'<label><input type="radio" name="agent" value=""{checked}>A new agent with exactly '
        "these permissions, named:</label>"
        f'<label>Agent name <input type="text" name="new_agent" value="{escape(new_name)}" '
        'maxlength="64" autocomplete="off"></label>'
    )
    return "".join(items)


def _consent_text(ask: Ask) -> str:
    granted = "".join(f"<li>{escape(line)}</li>" for line in ask.granted)
    refused = "".join(f"<li>{escape(line)}</li>" for line in ask.refused)
    to = f" to <strong>{escape(', '.join(ask.integrations))}</strong>" if ask.integrations else ""
    return (
        f"<p>It is requesting access{to}:</p><ul>{granted}</ul>"
        f"<p>Not granted:</p><ul>{refused}</ul>"
        f"<p>Only for the server at <strong>{escape(ask.resource)}</strong> "
        "(its tokens are refused anywhere else)</p>"
        "<p>Target: <strong>any target</strong></p>"
    )


def _durations(chosen: int) -> str:
    options = "".join(
        f'<option value="{seconds}"{" selected" if seconds == chosen else ""}>'
        f"{escape(pages.expires_in(seconds))}</option>"
        for seconds, _ in DURATIONS
    )
    return f'<p><label>Expiry <select name="grant_duration">{options}</select></label></p>'
