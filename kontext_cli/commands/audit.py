"""``kontext audit``: read the audit log."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kontext_cli import render
from kontext_cli.commands.common import checked, daemon
from kontext_cli.common import validate

app = typer.Typer(help="Read the audit log.", no_args_is_help=True)
FOLLOW_WAIT = 25


def line(event: dict[str, Any]) -> str:
    """``09:32:14 credential.issued  agent:pr-reviewer -> github``."""
    parts = [render.clock(event["ts"]), f"{event['event']:<18}"]
    agent = event.get("agent")
    if isinstance(agent, dict):
        parts.append(str(agent.get("id")))
    if event.get("integration"):
        parts.append(f"-> {event['integration']}")
    if event.get("target"):
        parts.append(f"[{event['target']}]")
    if event["event"] == "credential.denied" or (
        event.get("reason") and event["event"] != "credential.issued"
    ):
        parts.append(f"({event.get('reason')})")
    return " ".join(parts)


def _show(events: list[dict[str, Any]], as_json: bool) -> None:
    for event in events:
        if as_json:
            render.emit_json_line(event)
        else:
            render.out.print(line(event), markup=False)


@app.command("tail")
def tail(
    lines: Annotated[
        int, typer.Option("-n", "--lines", min=1, max=10000, help="How many recent events.")
    ] = 20,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new events until ^C.")
    ] = False,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print the latest audit events, and follow new ones with -f."""
    query = f"agent={checked(validate.agent_name, agent)}&" if agent else ""
    with daemon() as conn:
        answer = conn.call("GET", f"/v1/audit?{query}last={lines}")
        _show(answer["events"], as_json)
        last_id = answer["last_id"]
        while follow:
            answer = conn.call("GET", f"/v1/audit?{query}after={last_id}&wait={FOLLOW_WAIT}")
            _show(answer["events"], as_json)
            last_id = max(last_id, answer["last_id"])
