"""``kontext credential``: the credentials alive right now, and where they came from."""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any

import typer

from kontext.common import validate
from kontext_cli import render
from kontext_cli.commands.common import checked, daemon

app = typer.Typer(
    help="List live credentials (the jti to revoke one, its process, target and expiry).",
    no_args_is_help=True,
)

# Columns shown only when some credential has the field (tokens minted other than
# by exec: an RFC 8693 exchange, a consent code, a client of the issuer).
OPTIONAL = (("VIA", "via"), ("PARENT", "parent"), ("CLIENT", "client_id"))


def live(agent: str | None = None) -> list[dict[str, Any]]:
    """``GET /v1/credentials``: the live credentials, of one agent or all."""
    query = "?" + urllib.parse.urlencode({"agent": agent}) if agent else ""
    with daemon() as conn:
        rows: list[dict[str, Any]] = conn.call("GET", f"/v1/credentials{query}")["credentials"]
    return rows


def table(rows: list[dict[str, Any]]) -> None:
    """The credentials as a table (the optional columns only when some row has them)."""
    extra = [(title, key) for title, key in OPTIONAL if any(r.get(key) for r in rows)]
    render.table(
        ["JTI", "AGENT", "SCOPES", "TARGET", "PID", "EXPIRES", *(t for t, _ in extra)],
        [
            [
                str(r["jti"]),
                str(r["agent"]),
                " ".join(r.get("scopes") or []),
                str(r.get("target") or "any"),
                str(r.get("pid") or "-"),
                render.when(r.get("expires_at")),
                *(str(r.get(key) or "-") for _, key in extra),
            ]
            for r in rows
        ],
    )


@app.command("list")
def list_(
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="Only this agent's credentials.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List live credentials: jti, agent, scopes, target, process and expiry.

    Revoke one with 'kontext revoke credential JTI'; an exec'd command finds its
    own in KONTEXT_CREDENTIAL_ID.
    """
    name = checked(validate.agent_name, agent) if agent is not None else None
    if name is not None:
        with daemon() as conn:  # a mistyped name is "no agent named ...", not an empty list
            conn.call("GET", f"/v1/agents/{name}")
    rows = live(name)
    if as_json:
        render.emit_json(rows)
        return
    if not rows:
        who = f" for agent:{name}" if name else ""
        render.note(f"no live credentials{who}; 'kontext exec --agent NAME -- CMD' makes one")
        return
    table(rows)
