"""The kontext command-line definition: one typer app, one module per noun.

This is the single definition that help text, usage errors, shell completions
and man pages are generated from.
"""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperGroup

from kontext_cli import __version__
from kontext_cli.commands import (
    agent,
    audit,
    completion,
    config,
    consent,
    credential,
    daemon,
    dashboard,
    doctor,
    exec_,
    integration,
    keys,
    login,
    policy,
    revoke,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kontext {__version__}")
        raise typer.Exit()


def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show tracebacks for unexpected errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """kontext: every agent its own identity, with scoped, short-lived, per-process credentials."""


def command() -> TyperGroup:
    """The click command tree the CLI runs and the docs are read from (``--help`` polished)."""
    from kontext_cli import helptext

    root = typer.main.get_command(build())
    assert isinstance(root, TyperGroup)
    return helptext.polish(root)


def build() -> typer.Typer:
    app = typer.Typer(
        name="kontext",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
        # -h as well as --help, everywhere (click passes it down to every subcommand).
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    app.add_typer(agent.app, name="agent")
    exec_.register(app)
    revoke.register(app)
    app.add_typer(credential.app, name="credential")
    login.register(app)
    app.add_typer(consent.app, name="consent")
    app.add_typer(audit.app, name="audit")
    dashboard.register(app)
    app.add_typer(policy.app, name="policy")
    app.add_typer(daemon.app, name="daemon")
    app.add_typer(config.app, name="config")
    app.add_typer(keys.app, name="keys")
    app.add_typer(integration.app, name="integration")
    doctor.register(app)
    completion.register(app)
    return app
