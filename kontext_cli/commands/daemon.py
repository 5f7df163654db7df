"""``kontext daemon``: run, start, stop and inspect kontextd."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from kontext.common import paths
from kontext_cli import client, errors, render, spawn
from kontext_cli.commands import daemon_service

app = typer.Typer(help="Run, start, stop and inspect the kontextd daemon.", no_args_is_help=True)
STOP_TIMEOUT = 10.0


NewDatabase = Annotated[
    bool,
    typer.Option(
        "--new-database",
        help="Start with a new empty database where this home's is missing "
        "(its audit history is abandoned; the new log says so).",
    ),
]


@app.command("run")
def run(new_database: NewDatabase = False) -> None:
    """Run kontextd in the foreground (logs go to its log file)."""
    from kontextd import server

    raise typer.Exit(server.run(paths.resolve(), new_database=new_database))


@app.command("start")
def start(new_database: NewDatabase = False) -> None:
    """Start kontextd in the background if it is not running."""
    where = paths.resolve()
    conn = client.try_connect(where)
    if conn is not None:
        with conn:
            pid = conn.call("GET", "/v1/status")["pid"]
        if new_database:
            raise errors.UsageError(
                f"kontextd is already running (pid {pid}) on its database; "
                "--new-database is for starting where the database is missing"
            )
        render.note(f"kontextd is already running (pid {pid})")
        return
    spawn.start_background(where, new_database=new_database)


@app.command("stop")
def stop() -> None:
    """Stop kontextd; every live credential is revoked."""
    where = paths.resolve()
    conn = client.try_connect(where)
    if conn is None:
        render.note("kontextd is not running")
        return
    with conn:
        live = int(conn.call("GET", "/v1/status").get("live_credentials", 0))
        if live:  # said before it happens: their commands lose their credentials now
            render.note(
                f"stopping kontextd: {live} live credential(s) will be revoked "
                "('kontext credential list' shows them)"
            )
        pid = conn.call("POST", "/v1/shutdown")["pid"]
    deadline = time.monotonic() + STOP_TIMEOUT
    while client.try_connect(where) is not None:
        if time.monotonic() > deadline:
            raise errors.DaemonUnavailable(
                f"kontextd (pid {pid}) did not stop within {STOP_TIMEOUT:.0f}s"
            )
        time.sleep(0.05)
    ended = f"; {live} live credential(s) revoked" if live else ""
    render.note(f"stopped kontextd (pid {pid}){ended}")


@app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show whether kontextd runs, where, and how it keeps secrets."""
    conn = client.try_connect(paths.resolve())
    if conn is None:
        raise errors.DaemonUnavailable(
            "kontextd is not running; start it with 'kontext daemon start'"
        )
    with conn:
        info = conn.call("GET", "/v1/status")
    if as_json:
        render.emit_json(info)
        return
    secrets = info["secrets"] + (" (plaintext-file fallback)" if info["secrets_fallback"] else "")
    for label, value in (
        ("pid", info["pid"]),
        ("version", info["version"]),
        ("issuer", info["issuer"]),
        ("socket", info["socket"]),
        ("user", info["user"]),
        ("secrets", secrets),
        ("signing key", info["signing_kid"]),
        ("live credentials", info["live_credentials"]),
        ("started", render.when(info["started_at"])),
    ):
        render.out.print(f"{label + ':':<18}{value}", markup=False)


daemon_service.register(app)
