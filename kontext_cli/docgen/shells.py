"""Pieces the bash, zsh and fish generators share."""

from __future__ import annotations

import os

from kontext.common import integrations
from kontext_cli.docgen.model import HOME_MARK, home_paths

# ---------------------------------------------------------------------------
# Shell completions: shared pieces
# ---------------------------------------------------------------------------


def all_scopes() -> list[str]:
    """Every built-in INTEGRATION:SCOPE, for --allow and --scope."""
    return sorted(f"{i.name}:{s}" for i in integrations.BUILTINS.values() for s in i.scopes)


def all_integrations() -> list[str]:
    """The built-in integrations' names (user-defined ones are the user's to type)."""
    return sorted(integrations.BUILTINS)


def socket_under_home() -> str:
    """The control socket's place relative to KONTEXT_HOME (``run/control.sock``)."""
    return os.path.relpath(home_paths().socket, HOME_MARK)


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def pkey(path: tuple[str, ...]) -> str:
    return " ".join(path)
