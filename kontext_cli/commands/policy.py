"""``kontext policy``: the organisation's Cedar policies as the daemon sees them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kontext.common import validate
from kontext_cli import errors, render
from kontext_cli.commands.common import checked, daemon

app = typer.Typer(help="Org policy (Cedar): schema, check, reload, explain.", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("schema")
def schema() -> None:
    """Print the Cedar schema policies are written against."""
    with daemon() as conn:
        render.out.print(conn.call("GET", "/v1/policy/schema")["schema"], markup=False, end="")


def _report(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        render.emit_json(status)
    else:
        for ident, where in sorted(status["policies"].items(), key=lambda kv: kv[1]):
            render.out.print(f"{where}  {ident}", markup=False)
        for error in status["errors"]:
            render.out.print(f"error: {error}", markup=False)
        if not status["files"]:
            render.note(f"no policy files in {' or '.join(status['dirs'])}: the org layer allows")
    if status["errors"]:
        raise errors.PolicyInvalid(
            f"org policy is broken ({len(status['errors'])} error(s)); "
            "the daemon denies every credential until it is fixed"
        )


@app.command("check")
def check(as_json: JsonFlag = False) -> None:
    """List the loaded policies and any errors; exit 11 if a file is broken."""
    with daemon() as conn:
        _report(conn.call("GET", "/v1/policy"), as_json)


@app.command("reload")
def reload(as_json: JsonFlag = False) -> None:
    """Load the policy files again now (the daemon also notices edits within a second)."""
    with daemon() as conn:
        status = conn.call("POST", "/v1/policy/reload")
    if not as_json:
        render.note(
            f"loaded {len(status['policies'])} policies from {len(status['files'])} file(s)"
        )
    _report(status, as_json)


@app.command("explain")
def explain(
    agent: Annotated[str, typer.Option("--agent", "-a", help="The agent to ask for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help="INTEGRATION:SCOPE; repeat. Default: the agent's."),
    ] = None,
    target: Annotated[str | None, typer.Option("--target", "-t", help="The resource.")] = None,
    ttl: Annotated[str | None, typer.Option("--ttl", help="Requested lifetime, e.g. 2h.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Dry-run the request path for an exec: every layer's verdict and deciding policies."""
    body: dict[str, Any] = {
        "agent": checked(validate.agent_name, agent),
        "scopes": [f"{i}:{s}" for i, s in (checked(validate.scope, x) for x in scope or [])],
    }
    if target is not None:
        body["target"] = checked(validate.target, target)
    if ttl is not None:
        body["ttl"] = checked(validate.duration, ttl)
    with daemon() as conn:
        result = conn.call("POST", "/v1/policy/explain", body)
    if as_json:
        render.emit_json(result)
    else:
        _print_explanation(result)
    if not result["allowed"]:
        raise errors.Denied(result["message"])


def _print_explanation(result: dict[str, Any]) -> None:
    on = f" on {result['target']}" if result["target"] else ""
    ttl = validate.format_duration(result["ttl"])
    render.out.print(f"{result['agent']} {' '.join(result['scopes'])}{on} for {ttl}", markup=False)
    for layer in result["layers"]:
        ids = f"  [{', '.join(layer['policy_ids'])}]" if layer["policy_ids"] else ""
        name = layer["layer"].replace("_", " ")
        render.out.print(
            f"  {name:<18} {layer['decision']:<5}  {layer['reason']}{ids}", markup=False
        )
    render.out.print(f"result: {result['message']}", markup=False)
