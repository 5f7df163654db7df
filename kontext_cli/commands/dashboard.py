"""``kontext dashboard``: open the daemon's dashboard in the browser with a one-time link."""

from __future__ import annotations

from typing import Annotated

import typer

from kontext_cli import render
from kontext_cli.commands.common import daemon

HELP = """Open the dashboard: agents, live credentials, grants, activity, revocation.

The daemon serves it on its loopback port. This command asks the daemon for a
one-time link (it works once, within two minutes, and only for your OS user)
and opens it with your browser ($BROWSER if set); the browser then holds a
session cookie for 12 hours or until the daemon stops. With --no-browser the
link is printed on stdout instead.
"""


def register(app: typer.Typer) -> None:
    app.command("dashboard", help=HELP)(dashboard)


def dashboard(
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the one-time link; do not open a browser.")
    ] = False,
) -> None:
    with daemon() as conn:
        link = conn.call("POST", "/v1/dashboard/link")
    url, minutes = str(link["url"]), max(1, int(link["expires_in"]) // 60)
    if no_browser:
        render.out.print(url)
        render.note(f"the link opens the dashboard once, within {minutes} minutes")
        return
    import webbrowser  # only here: it imports much of the standard library

    if webbrowser.open(url):
        render.note("opened the kontext dashboard in your browser (the link works once)")
        return
    render.out.print(url)
    render.note(f"no browser could be opened: open this link within {minutes} minutes")
