"""``kontext audit``: read the audit log, checkpoint and prune it (verify/export: audit_files)."""

from __future__ import annotations

import sys
import urllib.parse
from typing import Annotated

import typer

from kontext.common import events as event_names
from kontext.common import validate, when
from kontext_cli import render
from kontext_cli.auditline import Lines
from kontext_cli.audittail import show
from kontext_cli.commands import audit_files
from kontext_cli.commands.common import checked, daemon

app = typer.Typer(help="Read, verify, export and prune the audit log.", no_args_is_help=True)
FOLLOW_WAIT = 25


@app.command("tail")
def tail(
    lines: Annotated[
        int, typer.Option("-n", "--lines", min=1, max=10000, help="How many recent events.")
    ] = 20,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new events until ^C.")
    ] = False,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's events.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's events.")] = None,
    event: Annotated[
        str | None, typer.Option("--event", help="Only this event, e.g. credential.denied.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this time: 2024-05-01, …T14:30, 2h.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Before this time.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print the latest audit events, and follow new ones with -f."""
    params = {
        "agent": checked(validate.agent_name, agent) if agent else None,
        "user": user,
        "event": checked(event_names.check, event) if event else None,
        "since": str(checked(when.parse, since)) if since else None,
        "until": str(checked(when.parse, until)) if until else None,
    }
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    query += "&" if query else ""
    out = Lines(sys.stdout)  # one renderer: a dated first batch keeps -f's lines dated
    with daemon() as conn:
        answer = conn.call("GET", f"/v1/audit?{query}last={lines}")
        show(answer["events"], as_json, out)
        last_id = answer["last_id"]
        while follow:
            answer = conn.call("GET", f"/v1/audit?{query}after={last_id}&wait={FOLLOW_WAIT}")
            show(answer["events"], as_json, out)
            last_id = max(last_id, answer["last_id"])


@app.command("checkpoint")
def checkpoint() -> None:
    """Sign a checkpoint over the newest event now (the daemon also signs on its own)."""
    with daemon() as conn:
        cp = conn.call("POST", "/v1/audit/checkpoint")
    render.out.print(f"signed checkpoint at event {cp['event_id']} (key {cp['kid']})")


@app.command("prune")
def prune(
    before: Annotated[
        str, typer.Option("--before", help="Remove events older than this: 2024-01-01, 90d.")
    ],
) -> None:
    """Remove events older than 30 days (config), leaving a signed anchor that says who."""
    cutoff = checked(when.parse, before)
    with daemon() as conn:
        result = conn.call("POST", "/v1/audit/prune", {"before": cutoff})
    anchor = result["anchor"]
    if anchor is None:
        render.out.print(f"nothing is older than {render.when(cutoff)}")
        return
    render.out.print(
        f"pruned {result['pruned']} events through event {anchor['event_id']}; "
        f"signed anchor by key {anchor['kid']}"
    )


audit_files.register(app)
