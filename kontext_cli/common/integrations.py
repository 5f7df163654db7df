"""The integration catalogue: built-ins plus user-defined ones from config.

An integration is an upstream API with a scope vocabulary in plain words and the
environment variables a child process expects its token in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kontext_cli.common import validate


@dataclass(frozen=True)
class Integration:
    """One upstream API and its scopes (scope name -> plain-words description)."""

    name: str
    display_name: str
    env: tuple[str, ...]
    scopes: Mapping[str, str] = field(default_factory=dict)

    def describe(self, scope: str) -> str:
        return self.scopes.get(scope, scope)


GITHUB = Integration(
    name="github",
    display_name="GitHub",
    env=("GITHUB_TOKEN", "GH_TOKEN"),
    scopes={
        "pulls:read": "Read pull requests",
        "pulls:write": "Post review comments and update pull requests",
        "issues:read": "Read issues",
        "issues:write": "Open, comment on and label issues",
        "contents:read": "Read repository contents",
        "contents:write": "Push commits to repository contents",
        "actions:read": "Read workflow runs and logs",
        "actions:write": "Re-run and cancel workflow runs",
        "metadata:read": "Read repository metadata",
        "releases:write": "Create and edit releases",
    },
)

SLACK = Integration(
    name="slack",
    display_name="Slack",
    env=("SLACK_TOKEN", "SLACK_BOT_TOKEN"),
    scopes={
        "chat:write": "Post messages",
        "channels:read": "List public channels",
        "channels:history": "Read messages in public channels",
        "users:read": "Read the member directory",
        "reactions:write": "Add emoji reactions",
    },
)

BUILTINS: dict[str, Integration] = {i.name: i for i in (GITHUB, SLACK)}
ENV_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class InvalidIntegration(ValueError):
    """A user-defined integration in the config file is malformed."""


def _env_names(name: str, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidIntegration(f"integrations.{name}.env must be a non-empty list of names")
    for var in raw:
        if (
            not isinstance(var, str)
            or not var
            or not set(var) <= ENV_NAME_CHARS
            or var[0].isdigit()
        ):
            raise InvalidIntegration(
                f"integrations.{name}.env: {var!r} is not an environment variable name "
                "(use A-Z, 0-9 and _)"
            )
    return tuple(raw)


def _scopes(name: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not raw:
        raise InvalidIntegration(
            f"integrations.{name}.scopes must be a table of scope = description"
        )
    for scope, text in raw.items():
        if not validate.SCOPE_NAME.fullmatch(scope) or not isinstance(text, str):
            raise InvalidIntegration(
                f"integrations.{name}.scopes: {scope!r} needs a name like issues:read "
                "and a description string"
            )
    return dict(raw)


def from_config(name: str, raw: Any) -> Integration:
    """Build a user-defined integration from its ``[integrations.NAME]`` table."""
    if not validate.INTEGRATION_NAME.fullmatch(name):
        raise InvalidIntegration(f"integrations.{name}: invalid integration name")
    if not isinstance(raw, dict):
        raise InvalidIntegration(f"integrations.{name} must be a table")
    display = raw.get("display_name", name)
    if not isinstance(display, str):
        raise InvalidIntegration(f"integrations.{name}.display_name must be a string")
    return Integration(
        name, display, _env_names(name, raw.get("env")), _scopes(name, raw.get("scopes"))
    )


def catalogue(config_integrations: Mapping[str, Any]) -> dict[str, Integration]:
    """All integrations: the built-ins, then the user's (which may override a built-in)."""
    merged = dict(BUILTINS)
    for name, raw in config_integrations.items():
        merged[name] = from_config(name, raw)
    return merged
