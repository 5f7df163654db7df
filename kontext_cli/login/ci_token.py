"""Obtain the CI platform's OIDC token for this job, without writing or printing it.

- GitHub Actions: GET ``$ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD`` with
  ``Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`` answers ``{"value":
  JWT}`` (what ``core.getIDToken(audience)`` of @actions/core does). GitHub sets
  both variables only for jobs with ``permissions: id-token: write``.
- GitLab CI: the job's ``id_tokens`` put the token in a variable
  (``KONTEXT_ID_TOKEN`` unless ``--token-env`` names another), with the ``aud``
  the job declared.
- Any other issuer: ``--token-env VAR`` or ``--token-file PATH``.

The token lives in this process's memory and on the Unix socket to kontextd only;
it is never put in argv, a file, a log or an error message.
"""

from __future__ import annotations

import os
import urllib.parse

from kontext_cli import errors

REQUEST_URL = "ACTIONS_ID_TOKEN_REQUEST_URL"
REQUEST_TOKEN = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 - a variable's name
GITLAB_ENV = "KONTEXT_ID_TOKEN"
MAX_TOKEN = 16 * 1024
TIMEOUT = 10.0
LOOPBACK = ("http://127.0.0.1:", "http://localhost:", "http://[::1]:")


def _checked(token: str, where: str) -> str:
    token = token.strip()
    if not token:
        raise errors.UsageError(f"{where} is empty: no CI token to log in with")
    if len(token) > MAX_TOKEN or not token.isascii():
        raise errors.UsageError(f"{where} does not hold a CI token (at most 16 KiB of ASCII)")
    return token  # the daemon judges the rest, and says which check failed


def from_env(name: str) -> str:
    """The token in environment variable ``name``."""
    value = os.environ.get(name)
    if value is None:
        raise errors.UsageError(
            f"${name} is not set: give the job an ID token in it "
            f"(GitLab: id_tokens: {name}: aud: …) or name another with --token-env"
        )
    return _checked(value, f"${name}")


def from_file(path: str) -> str:
    """The token in file ``path`` (read once; the file is the caller's to remove)."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            value = fh.read(MAX_TOKEN + 1)
    except OSError as exc:
        raise errors.UsageError(f"cannot read --token-file {path}: {exc.strerror}") from exc
    return _checked(value, f"--token-file {path}")


def _request_url(audience: str) -> str:
    url = os.environ.get(REQUEST_URL)
    if not url or not os.environ.get(REQUEST_TOKEN):
        raise errors.UsageError(
            f"{REQUEST_URL} is not set: GitHub gives a job its OIDC token only with "
            "'permissions: id-token: write' (docs/ci/github-actions.yml)"
        )
    if not url.startswith("https://") and not url.startswith(LOOPBACK):
        raise errors.UsageError(f"{REQUEST_URL} must be an https:// URL")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{urllib.parse.urlencode({'audience': audience})}"


def github_actions(audience: str) -> str:
    """Ask GitHub's token service for this job's token, for ``audience``."""
    import httpx

    url = _request_url(audience)
    headers = {"Authorization": f"bearer {os.environ[REQUEST_TOKEN]}", "Accept": "application/json"}
    try:
        answer = httpx.get(url, headers=headers, timeout=TIMEOUT, follow_redirects=False)
        value = answer.json().get("value") if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise errors.UpstreamFailed(
            f"cannot get the job's OIDC token from GitHub ({type(exc).__name__})"
        ) from exc
    if answer.status_code != 200:
        raise errors.UpstreamFailed(
            f"GitHub refused the job's OIDC token request (HTTP {answer.status_code}); "
            "does the job have 'permissions: id-token: write'?"
        )
    if not isinstance(value, str):
        raise errors.UpstreamFailed("GitHub's answer to the OIDC token request holds no token")
    return _checked(value, "GitHub's answer")
