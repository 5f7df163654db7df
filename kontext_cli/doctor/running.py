"""Checks that compare what the running daemon uses with what is on disk:
the config it applied, the database file it writes.

A daemon keeps running on what it loaded: an edit it refused, or a database file
removed under it, is invisible from the outside until something asks.
"""

from __future__ import annotations

import hashlib
import time

from kontext.common.paths import Paths
from kontext_cli.doctor import Check, fail, ok, skip
from kontext_cli.doctor.live import NOT_RUNNING, Probe

RELOAD = "kontext config reload (kontextd also applies a valid edit by itself within a second)"


def _file_sha256(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except FileNotFoundError:
        return hashlib.sha256(b"").hexdigest()
    except OSError:
        return ""


def config_applied(found: Probe, where: Paths) -> Check:
    """The daemon runs the config.toml that is on disk (19.4: edits are applied)."""
    if found.conn is None:
        return skip("applied", NOT_RUNNING)
    status, body = found.conn.request("GET", "/v1/config")
    if status == 404 or not isinstance(body, dict) or "sha256" not in body:
        return skip("applied", "this kontextd does not say which config it runs")
    loaded = time.strftime("%H:%M:%S", time.localtime(float(body.get("loaded_at") or 0)))
    path = str(body.get("path") or where.config_file)
    if body.get("error"):
        return fail(
            "applied",
            f"kontextd refused the edit of {path} ({body['error']}) and still runs the "
            f"settings it loaded at {loaded}",
            f"fix {path}; then {RELOAD}",
        )
    if body.get("sha256") != _file_sha256(path):
        return fail(
            "applied",
            f"kontextd runs an older {path} than the one on disk (loaded at {loaded})",
            RELOAD,
        )
    return ok("applied", f"kontextd runs {path} as it is on disk (loaded at {loaded})")


def database(found: Probe) -> Check:
    """The daemon still writes the database file at its path (not a removed one)."""
    if found.status is None:
        return skip("database", NOT_RUNNING)
    info = found.status.get("database")
    if not isinstance(info, dict):
        return skip("database", "this kontextd does not report its database")
    if info.get("lost"):
        return fail(
            "database",
            str(info["lost"]),
            "restore the file and restart kontextd (kontext daemon stop && kontext daemon "
            "start), or start anew: kontext daemon stop && kontext daemon start --new-database",
        )
    return ok("database", f"kontextd writes {info.get('path')}")
