"""``kontext daemon install|uninstall``: start kontextd with the user's session.

A systemd user unit on Linux, a launchd agent on macOS (see ``kontext_cli.service``).
When systemd is not this session's service manager (a container, WSL, another
init), the unit is still written and the commands to enable it are printed
instead of run.
"""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer

from kontext.common import paths
from kontext_cli import client, render, service

INSTALL_HELP = """Install kontextd as a service of your login session.

On Linux this writes a systemd user unit (kontextd.service, in
$XDG_CONFIG_HOME/systemd/user) and enables it; on macOS a launchd agent in
~/Library/LaunchAgents. The unit runs the installed kontextd by absolute path,
passes KONTEXT_HOME through when it is set, restarts kontextd if it crashes, and
holds no secret. Where systemd does not run your session (a container, WSL),
the unit is written and the commands that enable it are printed instead. Run it
again after moving or upgrading kontext.
"""


def register(app: typer.Typer) -> None:
    app.command("install", help=INSTALL_HELP)(install)
    app.command("uninstall")(uninstall)


def _show(commands: list[list[str]]) -> str:
    return "\n".join("  " + shlex.join(c) for c in commands)


def install(
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the unit instead of installing it.")
    ] = False,
) -> None:
    unit = service.render(service.platform_kind())
    if print_only:
        sys.stdout.write(unit.text)
        return
    replaced = service.write(unit)
    render.out.print(f"{'updated' if replaced else 'wrote'} {unit.path}")
    commands = unit.activate()
    if not service.session_manager_running(unit.kind):
        render.out.print(f"{unit.kind} is not running this session; to enable kontextd, run:")
        render.out.print(_show(commands))
        return
    running = client.try_connect(paths.resolve())
    if running is not None:
        running.close()
        # Starting the unit now would meet the lock of the daemon already running.
        commands = [[w for w in c if w != "--now"] for c in commands]
        render.note(
            "kontextd is already running outside the service; it takes over at the next "
            "login, or now with: kontext daemon stop && " + _start_command(unit.kind)
        )
    failure = service.run_all(commands)
    if failure:
        render.note(f"could not enable the service ({failure}); run:\n{_show(commands)}")
        return
    render.out.print("enabled kontextd as a service of your session")


def _start_command(kind: str) -> str:
    if kind == "systemd":
        return f"systemctl --user start {service.SYSTEMD_UNIT}"
    return f"launchctl kickstart gui/$(id -u)/{service.LAUNCHD_LABEL}"


def uninstall() -> None:
    """Stop and remove kontextd's service unit; kontextd then starts on demand again."""
    kind = service.platform_kind()
    path = service.unit_path(kind)
    if not path.exists():
        render.note(f"no kontextd service is installed ({path} does not exist)")
        return
    unit = service.Unit(kind=kind, path=path, text="")
    managed = service.session_manager_running(kind)
    if managed:
        service.run_all(unit.deactivate())  # already stopped or never enabled is fine
    service.remove(kind)
    if managed and kind == "systemd":
        service.run_all([["systemctl", "--user", "daemon-reload"]])
    render.out.print(f"removed {path}")
