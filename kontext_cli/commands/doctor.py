"""``kontext doctor``: check the set-up, explain each problem and its fix."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from kontext_cli import errors, render
from kontext_cli.doctor import FAIL, OK, SKIP, WARN, Check

HELP = """Check this set-up and explain each problem with its fix.

Checks: the config file; directory and file modes; the service unit, if
installed; the confinement level kontext exec gets here (and why); whether
kontextd is reachable and the same version as this kontext; how secrets are
kept (OS keyring, 0600-file fallback, or refused); the loopback port; org
policy files; the login session; the clock. Nothing is changed and kontextd is
not started, unless --fix is given: it restarts a kontextd older than this
kontext (its live credentials are revoked) and tightens loose file modes.
Exit status 0 when nothing failed, 12 when something did.
"""

STYLES = {OK: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}


def register(app: typer.Typer) -> None:
    app.command("doctor", help=HELP)(doctor)


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    fix: Annotated[
        bool, typer.Option("--fix", help="Restart a stale kontextd; tighten loose modes.")
    ] = False,
) -> None:
    from kontext_cli.doctor import run

    level: dict[str, object] = {}
    checks, done = run.run(fix=fix, level=level)
    failed = [c for c in checks if c.status == FAIL]
    if as_json:
        render.emit_json(
            {
                "ok": not failed,
                "fixed": done,
                "confinement": level,
                "checks": [c.to_json() for c in checks],
            }
        )
    else:
        for line in done:
            render.out.print(f"fixed: {line}")
        for check in checks:
            _show(check)
    if failed:
        names = ", ".join(c.name for c in failed)
        raise errors.DoctorFailed(f"{len(failed)} of {len(checks)} checks failed: {names}")


def _show(check: Check) -> None:
    line = Text()
    line.append(f"{check.status:<5}", style=STYLES.get(check.status, ""))
    line.append(f" {check.name:<9} {check.detail}")
    render.out.print(line)
    if check.fix and check.status in (WARN, FAIL):
        render.out.print(Text(f"{'':15} fix: {check.fix}"))
