"""``kontext agent``: register and manage agent identities."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kontext.common import validate
from kontext_cli import render
from kontext_cli.commands import credential
from kontext_cli.commands.common import checked, daemon

app = typer.Typer(help="Register and manage agents (agent:NAME identities).", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Agent name, e.g. pr-reviewer (or agent:pr-reviewer).")
]


@app.command("create")
def create(
    name: NameArg,
    allow: Annotated[
        list[str],
        typer.Option(
            "--allow", help="A scope the agent may use, INTEGRATION:SCOPE; repeat for more."
        ),
    ],
    display_name: Annotated[
        str | None, typer.Option("--display-name", help="Name shown in audit and consent.")
    ] = None,
    max_ttl: Annotated[
        str, typer.Option("--max-ttl", help="Longest credential lifetime, e.g. 30m, 1h.")
    ] = "1h",
    session_bus: Annotated[
        bool,
        typer.Option(
            "--session-bus",
            help="Let its confined exec reach the session D-Bus, and with it every "
            "Secret Service item (kontext's own keys included). Off by default.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Register a new agent with the scopes it may use."""
    for scope in allow:
        checked(validate.scope, scope)
    body: dict[str, Any] = {
        "name": checked(validate.agent_name, name),
        "allow": allow,
        "max_ttl": checked(validate.duration, max_ttl),
    }
    if display_name is not None:
        body["display_name"] = display_name
    if session_bus:
        body["session_bus"] = True
    with daemon() as conn:
        agent = conn.call("POST", "/v1/agents", body)
    if as_json:
        render.emit_json(agent)
        return
    render.out.print(
        f"created {agent['id']} ({agent['display_name']}): {' '.join(agent['scopes'])}"
    )


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """List agents, their scopes and live credentials."""
    with daemon() as conn:
        agents = conn.call("GET", "/v1/agents")["agents"]
    if as_json:
        render.emit_json(agents)
        return
    if not agents:
        render.note(
            "no agents yet; create one with 'kontext agent create NAME --allow github:pulls:read'"
        )
        return
    render.table(
        ["AGENT", "NAME", "SCOPES", "MAX TTL", "STATE", "LIVE"],
        [
            [
                a["id"],
                a["display_name"],
                " ".join(a["scopes"]),
                validate.format_duration(a["max_ttl"]),
                "disabled" if a["disabled"] else "enabled",
                str(a["live_credentials"]),
            ]
            for a in agents
        ],
    )


@app.command("show")
def show(name: NameArg, as_json: JsonFlag = False) -> None:
    """Show one agent, and its live credentials (jti, process, target, expiry)."""
    with daemon() as conn:
        agent = conn.call("GET", f"/v1/agents/{checked(validate.agent_name, name)}")
    live = credential.live(agent["name"]) if agent["live_credentials"] else []
    if as_json:
        render.emit_json({**agent, "credentials": live})
        return
    state = f"disabled ({agent['disabled_reason']})" if agent["disabled"] else "enabled"
    for label, value in (
        ("agent", agent["id"]),
        ("name", agent["display_name"]),
        ("scopes", " ".join(agent["scopes"])),
        ("max ttl", validate.format_duration(agent["max_ttl"])),
        ("state", state),
        ("session bus", _bus_words(agent)),
        ("live credentials", str(agent["live_credentials"])),
        ("created", render.when(agent["created_at"])),
    ):
        render.out.print(f"{label + ':':<18}{value}")
    if live:
        render.out.print("")
        credential.table(live)


def _bus_words(agent: dict[str, Any]) -> str:
    if agent.get("session_bus"):
        return "reachable from its exec (so is every Secret Service item)"
    return "hidden from its exec"


@app.command("set")
def set_(
    name: NameArg,
    session_bus: Annotated[
        bool,
        typer.Option(
            "--session-bus/--no-session-bus",
            help="Let its confined exec reach the session D-Bus (and every Secret Service "
            "item, kontext's keys included), or hide it again.",
        ),
    ],
) -> None:
    """Change an agent's settings (today: whether its exec may reach the session D-Bus)."""
    with daemon() as conn:
        agent = conn.call(
            "POST",
            f"/v1/agents/{checked(validate.agent_name, name)}/session-bus",
            {"session_bus": session_bus},
        )
    render.out.print(f"{agent['id']}: session bus {_bus_words(agent)}")


@app.command("delete")
def delete(name: NameArg) -> None:
    """Delete an agent; its live credentials and consent grants end first."""
    with daemon() as conn:
        result = conn.call("DELETE", f"/v1/agents/{checked(validate.agent_name, name)}")
    render.out.print(f"deleted {result['agent']}")


@app.command("disable")
def disable(name: NameArg) -> None:
    """Refuse new credentials and revoke live ones (like 'kontext revoke agent:NAME')."""
    with daemon() as conn:
        result = conn.call("POST", f"/v1/agents/{checked(validate.agent_name, name)}/disable")
    render.out.print(
        f"disabled {result['agent']}; revoked {len(result['revoked'])} live credential(s)"
    )


@app.command("enable")
def enable(name: NameArg) -> None:
    """Allow an agent credentials again (undoes disable or revoke)."""
    with daemon() as conn:
        agent = conn.call("POST", f"/v1/agents/{checked(validate.agent_name, name)}/enable")
    render.out.print(f"enabled {agent['id']}")
