"""``kontext config``: read and change settings in config.toml."""

from __future__ import annotations

from typing import Annotated

import typer

from kontext.common import config, paths
from kontext_cli import client, errors, render

app = typer.Typer(help="Read and change settings (config.toml).", no_args_is_help=True)


@app.command("set")
def set_(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting, e.g. secrets.fallback.")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="New value, e.g. refuse.")],
) -> None:
    """Change one setting; a running daemon reloads it."""
    where = paths.resolve()
    try:
        config.set_value(where.config_file, key, value)
    except config.SettingError as exc:
        raise errors.UsageError(str(exc)) from exc
    except config.ConfigError as exc:  # the file itself: unreadable or not valid TOML
        raise errors.ConfigInvalid(str(exc)) from exc
    conn = client.try_connect(where)
    if conn is not None:
        with conn:
            conn.call("POST", "/v1/config/reload")
    render.note(f"{key} = {value}")


@app.command("get")
def get(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting, e.g. secrets.fallback.")],
) -> None:
    """Print one setting's current value."""
    if key not in config.SETTABLE:
        raise errors.UsageError(f"unknown setting {key!r}: known are {', '.join(config.SETTABLE)}")
    try:
        cfg = config.load(paths.resolve().config_file)
    except config.ConfigError as exc:
        raise errors.ConfigInvalid(str(exc)) from exc
    render.out.print(cfg.secrets_fallback)


@app.command("path")
def path() -> None:
    """Print where config.toml lives."""
    render.out.print(paths.resolve().config_file, markup=False)
