"""Check an API key with the upstream before storing it, as ``gh auth login`` does.

An integration with a cheap identity call (``verify = "GET /user"`` for GitHub)
gets one request with the new key, to its ``base_url``, before the key is kept:
a refusal (401/403, or a 2xx JSON answer ``{"ok": false, "error": …}``, which is
how Slack's Web API refuses a token) is one line and nothing is stored; an upstream that cannot
be reached (or answers 5xx) is one line too, naming ``--no-verify``, which skips
the check. The key is never logged, audited or put into a message; what comes
back is only who the key belongs to (GitHub's ``login``), when the answer says.
"""

from __future__ import annotations

from typing import Any

from kontext.common import parsing, wire
from kontext.common.integrations import Integration
from kontextd.errors import ApiError

TIMEOUT = 10.0
IDENTITY_FIELDS = ("login", "email", "name", "user")


def check(integration: Integration, secret: str) -> str | None:
    """Ask the upstream who ``secret`` belongs to; raise ``ApiError`` if it refuses.

    Returns the identity the answer names (or None); does nothing (None) for an
    integration with no identity call or no base URL.
    """
    if integration.verify is None or not integration.base_url:
        return None
    import httpx  # the daemon imports httpx only when it needs it

    method, _, path = integration.verify.partition(" ")
    url = integration.base_url.rstrip("/") + path
    where = f"{method} {url}"
    headers = {
        "Authorization": f"{integration.auth_scheme} {secret}",
        "Accept": "application/json",
        "User-Agent": "kontextd",
    }
    try:
        answer = httpx.request(
            method, url, headers=headers, timeout=TIMEOUT, follow_redirects=False
        )
    except httpx.HTTPError as exc:  # never the exception's text: it may carry the request
        raise _unreachable(integration, where, type(exc).__name__) from None
    if answer.status_code in (401, 403):
        raise _refused(integration, where, f"HTTP {answer.status_code}")
    if not 200 <= answer.status_code < 300:
        raise _unreachable(integration, where, f"HTTP {answer.status_code}")
    value = _json(answer.content)
    if isinstance(value, dict) and value.get("ok") is False:
        raise _refused(integration, where, _code(value.get("error")))
    return _identity(value)


def _refused(integration: Integration, where: str, why: str) -> ApiError:
    return ApiError(
        wire.UPSTREAM,
        f"{integration.name} refused this key ({why} at {where}): nothing was stored; "
        "check the key (or pass --no-verify to store it unchecked)",
    )


def _code(error: Any) -> str:
    """The upstream's error code (Slack's ``invalid_auth``) if it looks like one: it goes
    into a message, so nothing else it says is repeated."""
    plain = isinstance(error, str) and 0 < len(error) <= 40 and error.isascii()
    return error if plain and error.replace("_", "").isalnum() else "refused"


def _unreachable(integration: Integration, where: str, why: str) -> ApiError:
    return ApiError(
        wire.UPSTREAM,
        f"could not check the key with {integration.name} ({why} at {where}): nothing was "
        "stored; try again, or pass --no-verify to store it unchecked",
    )


def _json(body: bytes) -> Any:
    try:
        return parsing.json_loads(body)
    except ValueError:
        return None


def _identity(value: Any) -> str | None:
    """Who the answer says the key belongs to: a short printable name, or None."""
    if not isinstance(value, dict):
        return None
    for field in IDENTITY_FIELDS:
        found = value.get(field)
        if isinstance(found, str) and found.isprintable() and 0 < len(found) <= 100:
            return found
    return None
