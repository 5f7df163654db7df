"""Reaching the embedded issuer: its URL and the client secret only this OS user can read."""

from __future__ import annotations

import json
import os

from kontext.common.paths import Paths
from kontext_cli import client, errors

SECRET_FILE = "oauth-client-secret"  # noqa: S105 - a file name


def issuer_and_secret(paths: Paths) -> tuple[str, str]:
    """Make sure the daemon runs, then read its issuer and the PAR client secret."""
    client.connect(paths).close()
    try:
        with open(paths.http_info) as fh:
            issuer = str(json.load(fh)["issuer"])
        fd = os.open(os.path.join(paths.runtime, SECRET_FILE), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as fh:
            secret = fh.read().strip()
    except (OSError, ValueError, KeyError) as exc:
        raise errors.DaemonUnavailable(
            "cannot read the daemon's issuer or client secret; restart with "
            "'kontext daemon stop' and try again"
        ) from exc
    return issuer, secret
