"""``kontext revoke``: stop an agent, or one credential, now."""

from __future__ import annotations

from typing import Annotated

import typer

from kontext.common import validate
from kontext_cli import errors, render
from kontext_cli.commands.common import checked, daemon

HELP = """Revoke agent:NAME (disable it and revoke all its live credentials) or one credential.

\b
  kontext revoke agent:issue-triage [--kill]
  kontext revoke credential JTI
"""


def register(app: typer.Typer) -> None:
    app.command("revoke", help=HELP, no_args_is_help=True)(revoke)


def revoke(
    what: Annotated[
        str,
        typer.Argument(
            metavar="agent:NAME | credential",
            help="An agent (agent:NAME or NAME), or 'credential'.",
        ),
    ],
    jti: Annotated[
        str | None, typer.Argument(metavar="JTI", help="With 'credential': its id.")
    ] = None,
    kill: Annotated[
        bool, typer.Option("--kill", help="Also terminate the agent's running exec'd processes.")
    ] = False,
) -> None:
    if what == "credential":
        if jti is None:
            raise errors.UsageError(
                "say which credential: kontext revoke credential JTI "
                "(see 'kontext credential list')"
            )
        if kill:
            raise errors.UsageError("--kill applies to agents: kontext revoke agent:NAME --kill")
        _revoke_credential(jti)
        return
    if jti is not None:
        raise errors.UsageError(f"unexpected extra argument {jti!r}")
    name = checked(validate.agent_name, what)
    with daemon() as conn:
        result = conn.call("POST", "/v1/revoke", {"agent": name, "kill": kill})
    line = f"revoked {result['agent']}: {len(result['revoked'])} live credential(s) revoked"
    if kill:
        line += f", {len(result['killed'])} process(es) terminated"
    render.out.print(line + f"; undo with 'kontext agent enable {name}'")


def _revoke_credential(jti: str) -> None:
    with daemon() as conn:
        result = conn.call("POST", "/v1/revoke", {"jti": jti})
    if result.get("revoked"):
        render.out.print(f"revoked credential {jti}")
        return
    # Nothing to do: say how it ended, and exit with a status of its own.
    how = str(result.get("status") or "ended")
    reason = f": {result['reason']}" if result.get("reason") else ""
    when = f" at {render.when(result['ended_at'])}" if result.get("ended_at") else ""
    raise errors.AlreadyEnded(
        f"credential {jti} had already ended ({how}{when}{reason}); nothing was revoked"
    )
