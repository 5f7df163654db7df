"""``kontext config``: read and change settings in config.toml, and reload them."""

from __future__ import annotations

from typing import Annotated

import typer

from kontext.common import config, paths
from kontext_cli import client, errors, render

app = typer.Typer(
    help="Read and change settings (config.toml); a running daemon picks up edits.",
    no_args_is_help=True,
)

SET_HELP = f"""Change one setting; a running daemon applies it at once.

Settable: {"; ".join(f"{s.key} ({s.accepts})" for s in config.SETTINGS.values())}.
Everything else (integrations, [audit]) is edited in config.toml itself
('kontext config path'): kontextd notices the edit within about a second, or
at once with 'kontext config reload'.
"""


@app.command("set", help=SET_HELP)
def set_(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting, e.g. secrets.fallback.")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="New value, e.g. refuse.")],
) -> None:
    where = paths.resolve()
    client.refuse_if_confined(where)  # inside an agent the config dir is an empty, read-only tmpfs
    conn = client.try_connect(where)
    try:
        if conn is not None:
            # Ask first, write second: an unconfined agent (--no-confine) can reach the
            # socket, and the daemon's refusal (exit 16) must leave the file as it was.
            conn.call("GET", "/v1/config")
        _write(where.config_file, key, value)
        if conn is not None:
            conn.call("POST", "/v1/config/reload")
    finally:
        if conn is not None:
            conn.close()
    render.note(f"{key} = {value}")


def _write(path: str, key: str, value: str) -> None:
    try:
        config.set_value(path, key, value)
    except config.SettingError as exc:
        raise errors.UsageError(str(exc)) from exc
    except config.ConfigError as exc:  # the file itself: unreadable or not valid TOML
        raise errors.ConfigInvalid(str(exc)) from exc


@app.command("get")
def get(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting, e.g. secrets.fallback.")],
) -> None:
    """Print one setting's current value (from the file; the default when unset)."""
    if key not in config.SETTINGS:
        raise errors.UsageError(f"unknown setting {key!r}: known are {', '.join(config.SETTABLE)}")
    try:
        cfg = config.load(paths.resolve().config_file)
    except config.ConfigError as exc:
        raise errors.ConfigInvalid(str(exc)) from exc
    render.out.print(cfg.shown(key))


@app.command("reload")
def reload() -> None:
    """Apply config.toml to the running daemon now (it also notices edits by itself).

    An invalid file changes nothing: kontextd keeps its settings and this exits 6
    naming the problem."""
    where = paths.resolve()
    conn = client.try_connect(where)
    if conn is None:
        render.note("kontextd is not running; it reads config.toml when it starts")
        return
    with conn:
        result = conn.call("POST", "/v1/config/reload")
    changed = result.get("changed") or []
    if changed:
        render.note(f"reloaded {result['path']}: changed {', '.join(changed)}")
    else:
        render.note(f"reloaded {result['path']}: nothing changed")


@app.command("path")
def path() -> None:
    """Print where config.toml lives."""
    render.out.print(paths.resolve().config_file, markup=False)
