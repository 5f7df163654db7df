"""The confinement level ``kontext exec`` gets on this machine, and why."""

from __future__ import annotations

import sys
from typing import Any

from kontext.common import config as config_mod
from kontext.common.paths import Paths
from kontext_cli.doctor import Check, fail, ok, warn

WHAT = (
    "its own user + mount namespace hides kontext's files and the session bus; Landlock "
    "(ABI {abi}) keeps signals, ptrace and abstract sockets inside its tree; typing into its "
    "terminal (TIOCSTI) is refused"
)


def level(where: Paths) -> tuple[Check, dict[str, Any]]:
    """The ``confine`` check, and the ``confinement`` object of ``doctor --json``."""
    try:
        mode = config_mod.load(where.config_file).exec_confine
    except config_mod.ConfigError:
        mode = "auto"  # the config check says what is wrong with it
    reason, abi = _probe(where)
    info: dict[str, Any] = {"mode": mode, "landlock_abi": abi, "platform": sys.platform}
    if mode == "off":
        info.update(level="off", reason="exec.confine is off")
        return warn(
            "confine",
            "exec.confine is off: agents run unconfined (kontextd still refuses their "
            "management requests)",
            "kontext config set exec.confine auto",
        ), info
    if reason is None:
        info.update(level="confined", reason=WHAT.format(abi=abi))
        return ok("confine", "kontext exec confines agents: " + WHAT.format(abi=abi)), info
    info.update(level="unconfined", reason=reason)
    detail = f"kontext exec cannot confine agents here: {reason}"
    if mode == "require":
        return fail("confine", detail + " (exec.confine is 'require': exec refuses)"), info
    return warn("confine", detail, "see README, 'Confinement'"), info


def _probe(where: Paths) -> tuple[str | None, int]:
    if not sys.platform.startswith("linux"):
        return f"this is {sys.platform}: confinement needs Linux", 0
    from kontext_cli import confine, linux

    return confine.probe(where), linux.landlock_abi()
