"""``kontext consent``: what this user has approved for which agent."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kontext.common import paths, validate
from kontext_cli import render
from kontext_cli.commands.common import checked, daemon

app = typer.Typer(help="List, grant and revoke your consent for agents.", no_args_is_help=True)
MAX_GRANT = 30 * 86400
AgentArg = Annotated[
    str, typer.Argument(metavar="agent:NAME", help="The agent (agent:NAME or just NAME).")
]


def _agent(raw: str) -> str:
    """``agent:NAME`` or a bare ``NAME``, as every command takes it."""
    return checked(validate.agent_name, raw)


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the live grants of this session."""
    with daemon() as conn:
        result = conn.call("GET", "/v1/consent")
    if as_json:
        render.emit_json(result)
        return
    rows = [
        [_who(g), " ".join(g["scopes"]), g["target"] or "any", _until(g)] for g in result["grants"]
    ]
    render.table(["AGENT", "SCOPES", "TARGET", "EXPIRES"], rows)


def _who(grant: dict[str, Any]) -> str:
    """The agent, and the MCP client it was approved for (as the client named itself)."""
    client = grant.get("client")
    return f"{grant['agent']} (MCP: {client['name']})" if client else str(grant["agent"])


def _until(grant: dict[str, Any]) -> str:
    """The effective expiry; marked when the login session ends before the grant would."""
    when = render.when(grant["expires_at"])
    asked = grant.get("asked_expires_at")
    return f"{when} (session end)" if asked and grant["expires_at"] < asked else when


@app.command("revoke")
def revoke(
    agent: AgentArg,
) -> None:
    """Withdraw every grant to agent:NAME (its next exec asks again)."""
    name = _agent(agent)
    with daemon() as conn:
        result = conn.call("POST", "/v1/consent/revoke", {"agent": f"agent:{name}"})
    count = len(result["revoked"])
    if count == 0:
        render.out.print(f"agent:{name} has no live grants: nothing to revoke")
        return
    render.out.print(f"revoked {count} grant{'s' if count != 1 else ''} to agent:{name}")


@app.command("grant")
def grant(
    agent: AgentArg,
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help="INTEGRATION:SCOPE to approve; repeat."),
    ],
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Only for this resource.")
    ] = None,
    for_: Annotated[
        str | None, typer.Option("--for", help="How long, e.g. 8h (default 1h, at most 30d).")
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the URL; do not open a browser.")
    ] = False,
) -> None:
    """Approve scopes for agent:NAME ahead of time (e.g. for CI), on the consent page."""
    from kontext_cli.login import consent

    name = _agent(agent)
    for item in scope:
        checked(validate.scope, item)
    scopes = list(dict.fromkeys(scope))
    where = checked(validate.target, target) if target is not None else None
    duration = None
    if for_ is not None:
        duration = checked(lambda v: validate.duration(v, lower=60, upper=MAX_GRANT), for_)
    with daemon() as conn:  # a mistyped agent is "no agent named ...", not an OAuth error
        conn.call("GET", f"/v1/agents/{name}")
    result = consent.obtain(
        paths.resolve(), name, scopes, where, duration, open_browser=not no_browser
    )
    until = render.when(result["expires_at"])
    capped = result["expires_at"] < result["asked_expires_at"]
    session = " — when your login session ends, before the time asked for" if capped else ""
    render.out.print(
        f"approved {' '.join(result['scopes'])} for agent:{name} until {until}{session}"
    )
