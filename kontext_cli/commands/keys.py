"""``kontext keys``: the daemon's token-signing keys."""

from __future__ import annotations

from typing import Annotated

import typer

from kontext_cli import render
from kontext_cli.commands.common import daemon

app = typer.Typer(
    help="Manage the keys that sign tokens (ES256; RS256 for ID tokens that ask).",
    no_args_is_help=True,
)

ROTATE_HELP = """Make new signing keys and retire the old ones.

The new keys are published in the JWKS at once and start signing after
keys.rotation_grace (default 10m), so resource servers that cached the JWKS
learn them first; the old keys sign until then, and their private halves are
deleted when they stop. --now skips the wait (for a key you think is exposed):
the old private keys are deleted at once.
"""


@app.command("rotate", help=ROTATE_HELP)
def rotate(
    now: Annotated[
        bool, typer.Option("--now", help="Sign with the new keys at once; delete the old now.")
    ] = False,
) -> None:
    with daemon() as conn:
        result = conn.call("POST", "/v1/keys/rotate", {"now": now})
    kids = result.get("kids") or {"ES256": result["kid"]}
    retired = result.get("retired") or []
    new = ", ".join(f"{kid} ({alg})" for alg, kid in sorted(kids.items()))
    signs_from = result.get("signs_from")
    if signs_from is None:
        render.out.print(f"new signing key {result['kid']}; retired {len(retired)}")
        render.note(f"new keys: {new}; the old private keys are deleted")
        return
    when = render.when(signs_from)
    # "new signing key X; retires 2 at T" read as if X signed already: it signs from T.
    old = "the old key retires" if len(retired) == 1 else f"the {len(retired)} old keys retire"
    render.out.print(f"new signing key {result['kid']}; signs from {when}, when {old}")
    render.note(
        f"new keys: {new}; published now, signing from {when} "
        "(keys.rotation_grace); until then the old keys sign"
    )


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print the JWKS.")] = False) -> None:
    """List published public keys (the JWKS)."""
    with daemon() as conn:
        jwks = conn.call("GET", "/v1/keys")
    if as_json:
        render.emit_json(jwks)
        return
    render.table(["KID", "ALG"], [[k["kid"], k["alg"]] for k in jwks["keys"]])
