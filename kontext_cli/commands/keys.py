"""``kontext keys``: the daemon's token-signing keys."""

from __future__ import annotations

from typing import Annotated

import typer

from kontext_cli import render
from kontext_cli.commands.common import daemon

app = typer.Typer(help="Manage the ES256 keys that sign credentials.", no_args_is_help=True)


@app.command("rotate")
def rotate() -> None:
    """Sign new tokens with a new key; old public keys stay published until their tokens expire."""
    with daemon() as conn:
        result = conn.call("POST", "/v1/keys/rotate")
    render.out.print(f"new signing key {result['kid']}; retired {len(result['retired'])}")


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print the JWKS.")] = False) -> None:
    """List published public keys (the JWKS)."""
    with daemon() as conn:
        jwks = conn.call("GET", "/v1/keys")
    if as_json:
        render.emit_json(jwks)
        return
    render.table(["KID", "ALG"], [[k["kid"], k["alg"]] for k in jwks["keys"]])
