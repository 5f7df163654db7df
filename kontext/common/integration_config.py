"""Validating a ``[integrations.NAME]`` table from config.toml into catalogue fields.

Shape (every key optional when NAME is a built-in, which it then overrides)::

    [integrations.jira]
    display_name = "Jira"
    env = ["JIRA_TOKEN"]
    scopes = { "issues:read" = "Read issues" }
    base_url = "https://acme.atlassian.net"     # https, or http on loopback only
    base_url_env = ["JIRA_BASE_URL"]
    credential = "api_key"                      # or "oauth"
    delivery = "broker"                         # or "token"
    auth_scheme = "Bearer"
    verify = "GET /rest/api/3/myself"           # checks a new API key before it is stored
    routes = [{ route = "GET /rest/api/3/issue/{key}", scope = "issues:read", target = "{key}" }]

    [integrations.jira.oauth]
    authorize_url = "https://auth.example/authorize"
    token_url = "https://auth.example/token"
    client_id = "kontext-local"
    scopes = ["read:jira-work"]
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from kontext.common import routes, validate

KEYS = frozenset(
    {
        "display_name",
        "env",
        "scopes",
        "base_url",
        "base_url_env",
        "credential",
        "oauth",
        "routes",
        "delivery",
        "auth_scheme",
        "verify",
    }
)
ENV_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class InvalidIntegration(ValueError):
    """A user-defined integration in the config file is malformed."""


@dataclass(frozen=True)
class OAuthProvider:
    """The provider's OAuth 2.0 endpoints for ``integration connect`` (code + PKCE)."""

    authorize_url: str
    token_url: str
    client_id: str | None = None
    scopes: tuple[str, ...] = ()


def _env_names(where: str, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidIntegration(f"{where} must be a non-empty list of names")
    for var in raw:
        if (
            not isinstance(var, str)
            or not var
            or not set(var) <= ENV_NAME_CHARS
            or var[0].isdigit()
        ):
            raise InvalidIntegration(
                f"{where}: {var!r} is not an environment variable name (use A-Z, 0-9 and _)"
            )
    return tuple(raw)


def _scopes(where: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not raw:
        raise InvalidIntegration(f"{where} must be a table of scope = description")
    for scope, text in raw.items():
        if not validate.SCOPE_NAME.fullmatch(scope) or not isinstance(text, str):
            raise InvalidIntegration(
                f"{where}: {scope!r} needs a name like issues:read and a description string"
            )
    return dict(raw)


def url(where: str, raw: Any) -> str:
    """An https URL, or http on a loopback host: an upstream secret never crosses a
    network in clear text."""
    parsed = urllib.parse.urlsplit(raw) if isinstance(raw, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidIntegration(f"{where} must be an https:// URL")
    if parsed.scheme == "http" and parsed.hostname not in LOOPBACK_HOSTS:
        raise InvalidIntegration(f"{where} must use https (http only on 127.0.0.1/localhost)")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise InvalidIntegration(f"{where} must not carry a query, fragment or credentials")
    return str(raw).rstrip("/")


def _choice(where: str, raw: Any, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise InvalidIntegration(f"{where} must be one of {', '.join(allowed)}, not {raw!r}")
    return str(raw)


def _oauth(where: str, raw: Any, base: OAuthProvider | None) -> OAuthProvider:
    if not isinstance(raw, dict) or set(raw) - {
        "authorize_url",
        "token_url",
        "client_id",
        "scopes",
    }:
        raise InvalidIntegration(f"{where} takes authorize_url, token_url, client_id and scopes")
    auth = raw.get("authorize_url", base.authorize_url if base else None)
    token = raw.get("token_url", base.token_url if base else None)
    client_id = raw.get("client_id", base.client_id if base else None)
    scopes = raw.get("scopes", list(base.scopes) if base else [])
    if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= 200):
        raise InvalidIntegration(f"{where}.client_id must be a string")
    if not isinstance(scopes, list) or not all(
        isinstance(s, str) and s and " " not in s for s in scopes
    ):
        raise InvalidIntegration(f"{where}.scopes must be a list of provider scope names")
    return OAuthProvider(
        url(f"{where}.authorize_url", auth),
        url(f"{where}.token_url", token),
        client_id,
        tuple(scopes),
    )


def _routes(where: str, raw: Any, scopes: Any) -> tuple[routes.RouteRule, ...]:
    if not isinstance(raw, list):
        raise InvalidIntegration(f"{where} must be a list of {{route, scope, target}} tables")
    rules = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) - {"route", "scope", "target"}:
            raise InvalidIntegration(f"{where}: each rule is {{route, scope, target}}")
        text, scope, target = entry.get("route"), entry.get("scope"), entry.get("target")
        if not isinstance(text, str) or not isinstance(scope, str) or scope not in scopes:
            raise InvalidIntegration(f"{where}: {text!r} needs a route and one of the scopes")
        if target is not None and not isinstance(target, str):
            raise InvalidIntegration(f"{where}: {text!r}: target must be a string")
        try:
            rules.append(routes.parse(text, scope, target))
        except routes.InvalidRoute as exc:
            raise InvalidIntegration(f"{where}: {exc}") from exc
    return tuple(rules)


def _verify(where: str, raw: Any) -> str:
    """``GET /path`` (or POST): the identity call that checks a new API key."""
    method, _, path = raw.partition(" ") if isinstance(raw, str) else ("", "", "")
    if (
        method not in ("GET", "POST")
        or not path.startswith("/")
        or not all(c.isalnum() or c in "/-._~" for c in path)
    ):
        raise InvalidIntegration(
            f"{where} must be 'GET /path' (or POST), e.g. 'GET /user', not {str(raw)[:40]!r}"
        )
    return f"{method} {path}"


def parse_overrides(name: str, raw: Any, base: Any) -> dict[str, Any]:
    """The catalogue fields ``raw`` sets; with no built-in ``base``, env and scopes are required."""
    where = f"integrations.{name}"
    if not isinstance(raw, dict):
        raise InvalidIntegration(f"{where} must be a table")
    unknown = set(raw) - KEYS
    if unknown:
        raise InvalidIntegration(f"{where}: unknown key {sorted(unknown)[0]!r}")
    fields: dict[str, Any] = {}
    if "display_name" in raw:
        if not isinstance(raw["display_name"], str):
            raise InvalidIntegration(f"{where}.display_name must be a string")
        fields["display_name"] = raw["display_name"]
    if base is None or "env" in raw:
        fields["env"] = _env_names(f"{where}.env", raw.get("env"))
    if base is None or "scopes" in raw:
        fields["scopes"] = _scopes(f"{where}.scopes", raw.get("scopes"))
    if "base_url" in raw:
        fields["base_url"] = url(f"{where}.base_url", raw["base_url"])
    if "base_url_env" in raw:
        fields["base_url_env"] = _env_names(f"{where}.base_url_env", raw["base_url_env"])
    if "credential" in raw:
        fields["credential"] = _choice(
            f"{where}.credential", raw["credential"], ("api_key", "oauth")
        )
    if "delivery" in raw:
        fields["delivery"] = _choice(f"{where}.delivery", raw["delivery"], ("broker", "token"))
    if "auth_scheme" in raw:
        fields["auth_scheme"] = _choice(
            f"{where}.auth_scheme", raw["auth_scheme"], ("Bearer", "token")
        )
    if "verify" in raw:
        fields["verify"] = _verify(f"{where}.verify", raw["verify"])
    if "oauth" in raw:
        fields["oauth"] = _oauth(f"{where}.oauth", raw["oauth"], getattr(base, "oauth", None))
    scopes = fields.get("scopes", getattr(base, "scopes", {}))
    if "routes" in raw:
        fields["routes"] = _routes(f"{where}.routes", raw["routes"], scopes)
    _check_consistent(where, {**_base_fields(base), **fields})
    return fields


def _base_fields(base: Any) -> dict[str, Any]:
    if base is None:
        return {}
    keys = ("base_url", "routes", "delivery", "credential", "oauth")
    return {k: getattr(base, k) for k in keys}


def _check_consistent(where: str, f: dict[str, Any]) -> None:
    mode = f.get("delivery") or ("broker" if f.get("routes") else "token")
    if mode == "broker" and f.get("routes") and not f.get("base_url"):
        raise InvalidIntegration(f"{where}: broker delivery needs a base_url to forward to")
    if f.get("credential") == "oauth" and f.get("oauth") is None:
        raise InvalidIntegration(f"{where}: credential = 'oauth' needs an [{where}.oauth] table")
    if f.get("delivery") == "token" and f.get("credential") != "oauth":
        raise InvalidIntegration(
            f"{where}: delivery = 'token' hands out the provider's short-lived tokens, "
            "so it needs credential = 'oauth'"
        )
