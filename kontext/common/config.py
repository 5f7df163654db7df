"""The user's ``config.toml``: reading, validating and the settable keys.

Shape::

    [secrets]
    fallback = "allow"                  # or "refuse": no plaintext-file fallback for secrets

    [audit]
    checkpoint_every = 1000             # sign a checkpoint at every Nth event ...
    checkpoint_interval = "5m"          # ... and at most this long after any event
    prune_min_age = "30d"               # 'audit prune' never removes younger events ("0s": any)

    [keys]
    rotation_grace = "10m"              # a rotated-in key is published this long before it signs

    [login]
    require_external_issuer = false     # true: only an external OIDC provider names the user

    [exec]
    confine = "auto"                    # "require": never run unconfined; "off": never confine

    [mcp]
    clients = "allow"                   # "off": no MCP client may register or ask for consent

    [ci]                                # CI federation (``kontext login --federate``)
    audience = "kontext"                # see kontext.common.ci_config for the whole table
    max_session = "1h"
    repository_policy = "protected"

    [integrations.jira]                 # a user-defined integration
    display_name = "Jira"
    env = ["JIRA_TOKEN"]
    scopes = { "issues:read" = "Read issues" }

A running daemon notices an edit within about a second (or at once with
``kontext config reload``): a valid file replaces the old settings in one step,
an invalid one is refused and the old settings stay (``kontext doctor`` names
the file and the error).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kontext.common import ci_config, integrations, parsing, validate

MAX_ROTATION_GRACE = 86400


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
class Setting:
    """One key ``kontext config set`` may change: its default, how to read a value,
    and which words ``config set`` accepts (shown in errors and help)."""

    key: str
    default: Any
    parse: Callable[[Any], Any]
    accepts: str
    show: Callable[[Any], str] = str


def _show_bool(value: Any) -> str:
    return "true" if value else "false"


def _show_duration(value: Any) -> str:
    return validate.format_duration(int(value))


def _choice(*allowed: str) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if raw not in allowed:
            raise ValueError(f"must be {' or '.join(repr(a) for a in allowed)}, not {raw!r}")
        return raw

    return parse


def _duration(upper: int) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if raw in ("0", "0s", 0):
            return 0
        if not isinstance(raw, str):
            raise ValueError(f'must be a duration such as "10m", not {raw!r}')
        try:
            return validate.duration(raw, lower=1, upper=upper)
        except validate.InvalidInput as exc:
            raise ValueError(str(exc)) from exc

    return parse


def _max_session(raw: Any) -> Any:
    if not isinstance(raw, str):
        raise ValueError(f'must be a duration such as "1h", not {raw!r}')
    try:
        return validate.duration(raw, lower=validate.MIN_TTL, upper=86400)
    except validate.InvalidInput as exc:
        raise ValueError(str(exc)) from exc


def _audience(raw: Any) -> Any:
    return ci_config.audience(raw)


def _boolean(raw: Any) -> Any:
    words = {"true": True, "false": False}
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in words:
        return words[raw.lower()]
    raise ValueError(f"must be true or false, not {raw!r}")


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        Setting("secrets.fallback", "allow", _choice("allow", "refuse"), "allow | refuse"),
        Setting(
            "keys.rotation_grace",
            600,
            _duration(MAX_ROTATION_GRACE),
            "a duration, e.g. 10m or 0s",
            _show_duration,
        ),
        Setting("login.require_external_issuer", False, _boolean, "true | false", _show_bool),
        Setting("exec.confine", "auto", _choice("auto", "require", "off"), "auto | require | off"),
        Setting("mcp.clients", "allow", _choice("allow", "off"), "allow | off"),
        Setting("ci.audience", "kontext", _audience, "an audience, e.g. kontext"),
        Setting(
            "ci.max_session", 3600, _max_session, "a duration, 10s to 24h, e.g. 1h", _show_duration
        ),
        Setting(
            "ci.repository_policy",
            "protected",
            _choice("protected", "off"),
            "protected | off",
        ),
    )
}
SETTABLE = tuple(SETTINGS)


@dataclass(frozen=True)
class Config:
    """The validated configuration."""

    secrets_fallback: str = "allow"
    audit: AuditSettings = field(default_factory=AuditSettings)
    rotation_grace: int = 600
    require_external_issuer: bool = False
    exec_confine: str = "auto"  # kontext exec's confinement (README, Confinement)
    mcp_clients: str = "allow"  # public OAuth clients (MCP) may register and ask for consent
    ci: ci_config.CISettings = field(default_factory=ci_config.CISettings)
    integrations: dict[str, integrations.Integration] = field(
        default_factory=lambda: dict(integrations.BUILTINS)
    )
    raw: dict[str, Any] = field(default_factory=dict)

    def value(self, key: str) -> Any:
        """The effective value of a settable key."""
        return _read_setting(self.raw, SETTINGS[key])

    def shown(self, key: str) -> str:
        """The effective value as a user writes it (``10m``, ``true``)."""
        return SETTINGS[key].show(self.value(key))


def read_raw(path: str) -> dict[str, Any]:
    """Parse the TOML file (depth-limited, see ``parsing``); a missing file is an empty config."""
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
        return parsing.toml_loads(text)
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); fix or remove the file"
        ) from exc
    except parsing.TooDeep as exc:
        raise ConfigError(f"{path}: {exc}; fix or remove the file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or remove the file") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: nested too deeply to read; fix or remove the file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc


def _read_setting(raw: dict[str, Any], setting: Setting) -> Any:
    section, _, name = setting.key.partition(".")
    table = raw.get(section, {})
    if not isinstance(table, dict):
        raise ValueError(f"[{section}] must be a table")
    if name not in table:
        return setting.default
    try:
        return setting.parse(table[name])
    except ValueError as exc:
        raise ValueError(f"{setting.key} {exc}") from exc


def load(path: str) -> Config:
    """Read and validate the config file at ``path``."""
    return parse(read_raw(path), path)


def parse(raw: dict[str, Any], path: str) -> Config:
    """Validate an already-read config; errors name ``path``."""
    try:
        values = {key: _read_setting(raw, setting) for key, setting in SETTINGS.items()}
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
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
    try:
        ci = ci_config.CISettings.parse(raw.get("ci", {}), values)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return Config(
        secrets_fallback=values["secrets.fallback"],
        audit=audit,
        rotation_grace=values["keys.rotation_grace"],
        require_external_issuer=values["login.require_external_issuer"],
        exec_confine=values["exec.confine"],
        mcp_clients=values["mcp.clients"],
        ci=ci,
        integrations=catalogue,
        raw=raw,
    )


def set_value(path: str, key: str, value: str) -> None:
    """Validate and write one settable key, atomically; the old file stays on any error."""
    import tomli_w

    setting = SETTINGS.get(key)
    if setting is None:
        raise SettingError(f"unknown setting {key!r}: settable keys are {', '.join(SETTABLE)}")
    try:
        setting.parse(value)
    except ValueError as exc:
        raise SettingError(f"{key} {exc}") from exc
    raw = read_raw(path)
    section, _, name = key.partition(".")
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    table[name] = _boolean(value) if setting.parse is _boolean else value
    parse(raw, path)  # the whole file must still be valid with the new value
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(tmp, "wb") as fh:
            tomli_w.dump(raw, fh)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}; nothing was changed") from exc


def flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the dotted keys of a config, for diffs."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
