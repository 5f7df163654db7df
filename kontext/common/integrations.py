"""The integration catalogue: built-ins plus user-defined ones from config.

An integration is an upstream API: a scope vocabulary in plain words, the
environment variables a child expects, the upstream base URL, how the upstream
credential is obtained (an API key, or OAuth with the provider), and the route
rules the gateway maps calls to scopes and targets with. How the credential
reaches the child (``delivery``): ``broker`` — the child gets a kontext token and
the gateway's URL, the upstream secret stays in the daemon — is the default
wherever route rules exist; ``token`` hands the child the provider's own
short-lived access token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kontext.common import routes, validate
from kontext.common.integration_config import (
    InvalidIntegration,
    OAuthProvider,
    parse_overrides,
)
from kontext.common.routes import RouteRule

__all__ = ["BUILTINS", "Integration", "InvalidIntegration", "OAuthProvider", "catalogue"]


@dataclass(frozen=True)
class Integration:
    """One upstream API and its scopes (scope name -> plain-words description)."""

    name: str
    display_name: str
    env: tuple[str, ...]
    scopes: Mapping[str, str] = field(default_factory=dict)
    base_url: str | None = None
    base_url_env: tuple[str, ...] = ()
    credential: str = "api_key"  # or "oauth"
    oauth: OAuthProvider | None = None
    routes: tuple[RouteRule, ...] = ()
    delivery: str | None = None  # None: broker where route rules exist, else token
    auth_scheme: str = "Bearer"
    # A cheap identity call ("GET /user"), made with a new API key before it is stored.
    verify: str | None = None

    def describe(self, scope: str) -> str:
        return self.scopes.get(scope, scope)

    @property
    def mode(self) -> str:
        """``broker`` or ``token``: how the credential reaches the child."""
        if self.delivery is not None:
            return self.delivery
        return "broker" if self.routes else "token"


def _rules(table: list[tuple[str, str, str | None]]) -> tuple[RouteRule, ...]:
    return tuple(routes.parse(text, scope, target) for text, scope, target in table)


REPO = "{owner}/{repo}"
R = "/repos/{owner}/{repo}"
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
    base_url="https://api.github.com",
    # Read by @actions/github, octokit in GitHub Actions and many scripts.
    base_url_env=("GITHUB_API_URL",),
    credential="api_key",
    verify="GET /user",  # as 'gh auth login' checks a token: who does it belong to?
    # A GitHub App's user tokens expire (8 h) and come with a refresh token;
    # the client_id is the user's own app's (config: integrations.github.oauth).
    oauth=OAuthProvider(
        "https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token"
    ),
    routes=_rules(
        [
            (f"GET {R}", "metadata:read", REPO),
            (f"GET {R}/pulls", "pulls:read", REPO),
            (f"GET {R}/pulls/**", "pulls:read", REPO),
            (f"POST {R}/pulls", "pulls:write", REPO),
            (f"POST {R}/pulls/*/reviews", "pulls:write", REPO),
            (f"POST {R}/pulls/*/reviews/*/events", "pulls:write", REPO),
            (f"POST {R}/pulls/*/comments", "pulls:write", REPO),
            (f"PATCH {R}/pulls/*", "pulls:write", REPO),
            (f"PUT {R}/pulls/*/merge", "contents:write", REPO),
            (f"GET {R}/issues", "issues:read", REPO),
            (f"GET {R}/issues/**", "issues:read", REPO),
            (f"POST {R}/issues", "issues:write", REPO),
            (f"POST {R}/issues/*/comments", "issues:write", REPO),
            (f"POST {R}/issues/*/labels", "issues:write", REPO),
            (f"PATCH {R}/issues/*", "issues:write", REPO),
            (f"GET {R}/contents/**", "contents:read", REPO),
            (f"GET {R}/git/**", "contents:read", REPO),
            (f"GET {R}/commits", "contents:read", REPO),
            (f"GET {R}/commits/**", "contents:read", REPO),
            (f"GET {R}/tarball/**", "contents:read", REPO),
            (f"PUT {R}/contents/**", "contents:write", REPO),
            (f"GET {R}/actions/**", "actions:read", REPO),
            (f"POST {R}/actions/runs/*/rerun", "actions:write", REPO),
            (f"POST {R}/actions/runs/*/cancel", "actions:write", REPO),
            (f"GET {R}/releases", "metadata:read", REPO),
            (f"GET {R}/releases/**", "metadata:read", REPO),
            (f"POST {R}/releases", "releases:write", REPO),
            (f"PATCH {R}/releases/*", "releases:write", REPO),
        ]
    ),
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
    base_url="https://slack.com",
    base_url_env=("SLACK_API_URL",),
    # Slack's identity call; a bad token is HTTP 200 with {"ok": false} (gateway/verify).
    verify="POST /api/auth.test",
    oauth=OAuthProvider(
        "https://slack.com/oauth/v2/authorize", "https://slack.com/api/oauth.v2.access"
    ),
    routes=_rules(
        [
            ("POST /api/chat.postMessage", "chat:write", None),
            ("POST /api/chat.update", "chat:write", None),
            ("GET /api/conversations.list", "channels:read", None),
            ("GET /api/conversations.history", "channels:history", None),
            ("GET /api/users.list", "users:read", None),
            ("POST /api/reactions.add", "reactions:write", None),
        ]
    ),
)

BUILTINS: dict[str, Integration] = {i.name: i for i in (GITHUB, SLACK)}


def from_config(name: str, raw: Any) -> Integration:
    """Build a user-defined integration from its ``[integrations.NAME]`` table.

    A table named like a built-in overrides only the keys it sets (for example
    ``base_url`` for GitHub Enterprise, or ``oauth.client_id``).
    """
    if not validate.INTEGRATION_NAME.fullmatch(name):
        raise InvalidIntegration(f"integrations.{name}: invalid integration name")
    base = BUILTINS.get(name)
    fields = parse_overrides(name, raw, base)
    if base is not None:
        return dataclasses.replace(base, **fields)
    return Integration(name=name, **{"display_name": name, **fields})


def catalogue(config_integrations: Mapping[str, Any]) -> dict[str, Integration]:
    """All integrations: the built-ins, then the user's (which may override a built-in)."""
    merged = dict(BUILTINS)
    for name, raw in config_integrations.items():
        merged[name] = from_config(name, raw)
    return merged
