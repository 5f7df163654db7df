"""``kontext login --federate``: a CI job logs in with its platform's OIDC token.

No browser, no prompt, no waiting: the job's token goes to kontextd over the
control socket with the git objects that prove ``.kontext/ci.toml`` at the
commit the token names (``kontext_cli.login.git_objects``); the daemon verifies
both and answers with the session or one line naming the check that failed
(exit 18). Which flags go with which platform is checked here, before anything
is read or sent.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

from kontext_cli import errors, render
from kontext_cli.commands.common import daemon

PLATFORMS = {"github-actions": "github", "gitlab": "gitlab", "oidc": "oidc"}


@dataclass(frozen=True)
class FederateRequest:
    """The flags of ``login --federate``, validated together (``validate``)."""

    federate: str
    issuer: str | None
    token_file: str | None
    token_env: str | None
    checkout: str
    browser_flags: bool  # --client-id, --no-browser or --timeout given
    force: bool = False  # end another live session (its grants and credentials) if need be

    def validate(self) -> str:
        """The platform's wire name; ``UsageError`` for flags that do not go together."""
        platform = PLATFORMS[self.federate]  # one of them: the option is a choice
        if self.browser_flags:
            raise errors.UsageError(
                "--federate opens no browser: --client-id, --no-browser and --timeout do not apply"
            )
        if self.token_file is not None and self.token_env is not None:
            raise errors.UsageError("give --token-file or --token-env, not both")
        if platform == "github" and (self.token_file or self.token_env):
            raise errors.UsageError(
                "--federate github-actions asks GitHub for the token itself; "
                "--token-file and --token-env are for gitlab and oidc"
            )
        if platform == "oidc" and (self.issuer is None or not (self.token_file or self.token_env)):
            raise errors.UsageError(
                "--federate oidc needs --issuer URL and --token-file PATH or --token-env VAR"
            )
        return platform


def _given_token(req: FederateRequest) -> str:
    """The token in ``--token-file`` or the variable (then dropped from this process's
    environment, so the daemon it may start does not inherit it)."""
    from kontext_cli.login import ci_token

    if req.token_file is not None:
        return ci_token.from_file(req.token_file)
    name = req.token_env or ci_token.GITLAB_ENV
    token = ci_token.from_env(name)
    os.environ.pop(name, None)
    return token


def _commit(token: str) -> str | None:
    """The commit the token names (read unverified: the daemon checks it), if any."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return None
    sha = claims.get("sha") if isinstance(claims, dict) else None
    return sha if isinstance(sha, str) and len(sha) in (40, 64) and sha.isalnum() else None


def run(req: FederateRequest) -> None:
    """Obtain the token, prove the policy, start the session, say so."""
    from kontext_cli.login import ci_token, git_objects

    platform = req.validate()
    token = None if platform == "github" else _given_token(req)  # read before any daemon
    with daemon() as conn:
        if token is None:  # GitHub's is asked for kontext's audience
            audience = str(conn.call("GET", "/v1/session/federation")["audience"])
            token = ci_token.github_actions(audience)
        body: dict[str, Any] = {"platform": platform, "token": token, "force": req.force}
        if req.issuer is not None:
            body["issuer"] = req.issuer
        sha = _commit(token)
        if sha is not None:
            body["proof"] = git_objects.proof(req.checkout, sha)
        info = conn.call("POST", "/v1/session/federate", body)
    show(info)


def show(info: dict[str, Any]) -> None:
    """``Logged in as ci:github:acme/backend@refs/heads/main (ISSUER) until …`` and
    one line per trust rule the session holds."""
    render.out.print(
        f"Logged in as {info['user']} ({info['issuer']}) until {render.when(info['expires_at'])}",
        highlight=False,
        markup=False,
    )
    for rule in info.get("rules", []):
        agents = ", ".join(f"agent:{a}" for a in rule["agents"])
        render.out.print(
            f"  trust rule {rule['rule']}: {agents} with {' '.join(rule['scopes'])} "
            f"on {', '.join(rule['targets'])} until {render.when(rule['until'])}",
            highlight=False,
            markup=False,
        )
