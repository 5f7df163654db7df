"""The user's ``config.toml``: reading, validating and the settable keys.

Shape::

    [secrets]
    fallback = "allow"          # or "refuse": no plaintext-file fallback for secrets

    [audit]
    checkpoint_every = 1000     # sign a checkpoint at every Nth event ...
    checkpoint_interval = "5m"  # ... and at most this long after any event
    prune_min_age = "30d"       # 'audit prune' never removes younger events ("0s": any)

    [integrations.jira]         # a user-defined integration
    display_name = "Jira"
    env = ["JIRA_TOKEN"]
    scopes = { "issues:read" = "Read issues" }
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from kontext.common import integrations, validate

SETTABLE = {"secrets.fallback": ("allow", "refuse")}


class ConfigError(ValueError):
    """The config file cannot be read or holds an invalid value."""


class SettingError(ConfigError):
    """``set_value`` was asked for an unknown key or a value it does not take (bad
    usage, not a broken file)."""


@dataclass(frozen=True)
class AuditSettings:
    """``[audit]``: when checkpoints are signed, and how old pruned events must be."""

    checkpoint_every: int = 1000
    checkpoint_interval: int = 300
    prune_min_age: int = 30 * 86400

    @classmethod
    def parse(cls, table: Any) -> AuditSettings:
        """Validate the ``[audit]`` table; raises ``ValueError`` naming the bad key."""
        if not isinstance(table, dict):
            raise ValueError("[audit] must be a table")
        every = table.get("checkpoint_every", cls.checkpoint_every)
        if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= 1_000_000:
            raise ValueError(f"audit.checkpoint_every must be 1..1000000, not {every!r}")
        return cls(
            checkpoint_every=every,
            checkpoint_interval=_seconds(table, "checkpoint_interval", "5m", 10, 86400),
            prune_min_age=_seconds(table, "prune_min_age", "30d", 0, 3650 * 86400),
        )


def _seconds(table: dict[str, Any], name: str, default: str, lower: int, upper: int) -> int:
    raw = table.get(name, default)
    if raw in ("0", "0s") and lower == 0:
        return 0
    try:
        if not isinstance(raw, str):
            raise validate.InvalidInput(f'use a duration such as "{default}", not {raw!r}')
        return validate.duration(raw, lower=max(lower, 1), upper=upper)
    except validate.InvalidInput as exc:
        raise ValueError(f"audit.{name}: {exc}") from exc


@dataclass(frozen=True)
class Config:
    """The validated configuration."""

    secrets_fallback: str = "allow"
    audit: AuditSettings = field(default_factory=AuditSettings)
    integrations: dict[str, integrations.Integration] = field(
        default_factory=lambda: dict(integrations.BUILTINS)
    )
    raw: dict[str, Any] = field(default_factory=dict)


def read_raw(path: str) -> dict[str, Any]:
    """Parse the TOML file; a missing file is an empty config."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or remove the file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc


def load(path: str) -> Config:
    """Read and validate the config file at ``path``."""
    raw = read_raw(path)
    secrets = raw.get("secrets", {})
    if not isinstance(secrets, dict):
        raise ConfigError(f"{path}: [secrets] must be a table")
    fallback = secrets.get("fallback", "allow")
    if fallback not in SETTABLE["secrets.fallback"]:
        raise ConfigError(f"{path}: secrets.fallback must be 'allow' or 'refuse', not {fallback!r}")
    user_integrations = raw.get("integrations", {})
    if not isinstance(user_integrations, dict):
        raise ConfigError(f"{path}: [integrations] must be a table")
    try:
        catalogue = integrations.catalogue(user_integrations)
    except integrations.InvalidIntegration as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        audit = AuditSettings.parse(raw.get("audit", {}))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return Config(secrets_fallback=fallback, audit=audit, integrations=catalogue, raw=raw)


def set_value(path: str, key: str, value: str) -> None:
    """Validate and write one settable key, atomically; the old file stays on any error."""
    import tomli_w

    allowed = SETTABLE.get(key)
    if allowed is None:
        raise SettingError(f"unknown setting {key!r}: settable keys are {', '.join(SETTABLE)}")
    if value not in allowed:
        raise SettingError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
    raw = read_raw(path)
    section, _, name = key.partition(".")
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    table[name] = value
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        tomli_w.dump(raw, fh)
    os.replace(tmp, path)
