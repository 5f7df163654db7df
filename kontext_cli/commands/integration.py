"""``kontext integration``: connect upstream APIs once; agents use them through kontext."""

from __future__ import annotations

import getpass
import sys
import urllib.parse
from typing import Annotated, Any

import typer

from kontext.common import validate
from kontext_cli import errors, render
from kontext_cli.commands.common import daemon

app = typer.Typer(
    help="Connect upstream APIs (GitHub, Slack, your own) whose secrets stay in kontextd.",
    no_args_is_help=True,
)


def _name(value: str) -> str:
    if not validate.INTEGRATION_NAME.fullmatch(value):
        raise errors.UsageError(
            f"invalid integration name {value[:40]!r}: use lowercase letters, digits and '-'"
        )
    return value


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show every integration, whether it is connected and how agents reach it (never secrets)."""
    with daemon() as conn:
        rows = conn.call("GET", "/v1/integrations")["integrations"]
    if as_json:
        render.emit_json(rows)
        return
    render.table(
        ["NAME", "DISPLAY NAME", "CONNECTED", "DELIVERY", "UPSTREAM"],
        [
            [
                r["name"],
                r["display_name"],
                f"yes ({r['method']}, {render.when(r['connected_at'])})"
                if r["connected"]
                else "no",
                r["delivery"],
                r["base_url"] or "-",
            ]
            for r in rows
        ],
    )


# A [integrations.NAME] just added to config.toml is missing while the daemon refuses the
# file's last edit: say so, or "no integration" sends the user looking at the name.
REFUSED = (
    "; kontextd refused config.toml's last edit and runs the settings before it "
    "(see 'kontext doctor')"
)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The integration, e.g. github.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one integration: its scopes in plain words, and its route catalogue.

    Each route rule reads METHOD /path -> the scope an agent needs for it, on the
    target the path names; a call no rule matches is refused (403).
    """
    name = _name(name)
    with daemon() as conn:
        rows = conn.call("GET", "/v1/integrations")["integrations"]
        row = next((r for r in rows if r["name"] == name), None)
        refused = row is None and bool(conn.call("GET", "/v1/config").get("error"))
    if row is None:
        known = ", ".join(r["name"] for r in rows)
        raise errors.NotFound(
            f"no integration {name!r} (known: {known}){REFUSED if refused else ''}"
        )
    if as_json:
        render.emit_json(row)
        return
    connected = f"yes ({row['method']}, {render.when(row['connected_at'])})"
    for label, value in (
        ("integration", f"{row['name']} ({row['display_name']})"),
        ("connected", connected if row["connected"] else "no"),
        ("delivery", row["delivery"]),
        ("upstream", row["base_url"] or "-"),
        ("variables", " ".join(row["env"]) or "-"),
    ):
        render.out.print(f"{label + ':':<13}{value}")
    render.out.print("\nscopes:")
    for scope, words in row["scopes"].items():
        render.out.print(f"  {name + ':' + scope:<28} {words}")
    if row["routes"]:
        render.out.print("\nroutes (METHOD /path -> scope on target; anything else is refused):")
    for rule in row["routes"]:
        on = f" on {rule['target']}" if rule.get("target") else ""
        render.out.print(f"  {rule['route']} -> {rule['scope']}{on}")


def _read_secret() -> str:
    """The secret from stdin: a prompt without echo on a terminal, else the piped text."""
    if sys.stdin.isatty():
        secret = getpass.getpass("Secret (not echoed): ")
    else:
        secret = sys.stdin.read(64 * 1024)
    secret = secret.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise errors.UsageError("no secret on stdin (pipe it in, e.g. from your password manager)")
    return secret


@app.command("connect")
def connect(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The integration, e.g. github.")],
    secret_stdin: Annotated[
        bool,
        typer.Option("--secret-stdin", help="Read an API key from stdin (never echoed)."),
    ] = False,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify",
            help="Store the API key without first asking the upstream whose it is.",
        ),
    ] = False,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the authorization URL; open nothing.")
    ] = False,
    timeout: Annotated[
        int, typer.Option("--timeout", min=10, max=3600, help="Seconds to wait for the browser.")
    ] = 300,
) -> None:
    """Connect NAME: OAuth with the provider in your browser, or an API key from stdin."""
    name = _name(name)
    if secret_stdin:
        secret = _read_secret()
        body = {"secret": secret, "verify": not no_verify}
        with daemon() as conn:
            result = conn.call("POST", f"/v1/integrations/{name}/secret", body)
        render.note(_connected_line(name, result))
        return
    if no_verify:
        raise errors.UsageError("--no-verify goes with --secret-stdin (an API key)")
    _connect_oauth(name, no_browser=no_browser, timeout=timeout)


def _connected_line(name: str, result: dict[str, Any]) -> str:
    """``connected github as octocat (key checked with GET /user; ...)``."""
    who = f" as {result['identity']}" if result.get("identity") else ""
    if result.get("verified"):
        how = f"key checked with {result['verify']}"
    elif result.get("verify"):
        how = "key not checked: --no-verify"
    else:
        how = f"{name} has no identity call to check the key with"
    return f"connected {name}{who} ({how}; stored by kontextd, agents never see it)"


def _connect_oauth(name: str, *, no_browser: bool, timeout: int) -> None:
    from kontext_cli.login import flow
    from kontext_cli.login.callback import ProviderRedirect

    action = f"connecting {name}"
    flow.require_person(
        action, open_browser=not no_browser, beforehand="connect it beforehand at a terminal"
    )
    with daemon() as conn, ProviderRedirect() as listener:
        start = conn.call(
            "POST", f"/v1/integrations/{name}/oauth/start", {"redirect_uri": listener.redirect_uri}
        )
        url = str(start["authorize_url"])
        render.note(f"Open this URL to connect {name}:\n{url}")
        if not no_browser:
            import webbrowser

            webbrowser.open(url)
        try:
            params = listener.wait(timeout)
        except (KeyboardInterrupt, errors.Cancelled):
            raise errors.Cancelled(f"{action} cancelled (Ctrl-C); nothing changed") from None
        if params is None:
            raise errors.LoginFailed(
                f"{action}: no answer from the browser within {timeout}s; nothing changed"
            )
        result = conn.call("POST", f"/v1/integrations/{name}/oauth/finish", _finish_body(params))
    how = "refreshes on its own" if result.get("refreshable") else "lasts until it expires"
    render.note(f"connected {name} with OAuth; the connection {how}")


def _finish_body(params: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {k: params[k] for k in ("code", "state", "error") if k in params}
    if "error" in body:
        body["error"] = urllib.parse.unquote_plus(body["error"])[:60]
    return body


@app.command("disconnect")
def disconnect(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The integration, e.g. github.")],
) -> None:
    """Forget NAME's upstream secret; gateway calls fail until it is connected again."""
    name = _name(name)
    with daemon() as conn:
        result = conn.call("POST", f"/v1/integrations/{name}/disconnect")
    render.note(f"disconnected {name}" if result["disconnected"] else f"{name} was not connected")
