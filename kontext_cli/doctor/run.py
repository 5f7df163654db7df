"""Run every check in order; with ``fix``, repair what can be repaired, then check again."""

from __future__ import annotations

from typing import Any

from kontext.common import paths as paths_mod
from kontext.common.paths import Paths
from kontext_cli.doctor import FAIL, Check, fail
from kontext_cli.doctor import confinement as confinement
from kontext_cli.doctor import live as live
from kontext_cli.doctor import local as local
from kontext_cli.doctor import running as running


def diagnose(where: Paths, level: dict[str, Any] | None = None) -> list[Check]:
    """Every check; ``level`` (when given) receives the confinement level's facts."""
    confine_check, facts = confinement.level(where)
    if level is not None:
        level.update(facts)
    checks = [local.config(where), local.directories(where), local.service_unit(), confine_check]
    probe = live.probe(where)
    checks.append(probe.check)
    checks += [
        live.versions(probe),
        running.config_applied(probe, where),
        running.database(probe),
        live.secrets(probe, where),
        live.loopback(probe, where),
        live.policy(probe),
        live.session(probe),
        live.clock(probe, where),
    ]
    probe.close()
    return checks


def repair(where: Paths, checks: list[Check]) -> list[str]:
    """Fix what ``--fix`` may fix; one line per thing done."""
    done: list[str] = []
    if any(c.status == FAIL and c.name == "modes" for c in checks):
        done += local.tighten_modes(where)
    if any(c.status == FAIL and c.name == "versions" for c in checks):
        done.append(live.restart(where))
    return done


def run(fix: bool = False, level: dict[str, Any] | None = None) -> tuple[list[Check], list[str]]:
    try:
        where = paths_mod.resolve()
    except paths_mod.PathsUnusable as exc:  # nothing else can be checked without the paths
        fix_it = "export XDG_RUNTIME_DIR=/run/user/$(id -u), or KONTEXT_HOME=~/.kontext"
        return [fail("paths", str(exc), fix_it)], []
    checks = diagnose(where, level)
    done = repair(where, checks) if fix else []
    if done:
        checks = diagnose(where, level)
    return checks, done
