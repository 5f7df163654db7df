"""``kontext integration connect``: OAuth 2.0 authorization code + PKCE with the provider.

The CLI runs the loopback redirect listener (RFC 8252 §7.3) and the browser;
the daemon holds the PKCE verifier and ``state``, builds the authorization URL,
and exchanges the code itself, so the refresh token goes straight into the
SecretStore. Only S256 challenges are sent (RFC 7636 §4.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from typing import Any

from kontext.common import parsing, wire
from kontext.common.integrations import Integration
from kontextd.core import Core
from kontextd.errors import ApiError, invalid
from kontextd.gateway import connections
from kontextd.gateway.state import AccessToken, PendingConnect

MAX_PENDING = 16


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _loopback_redirect(raw: Any) -> str:
    """RFC 8252 §7.3: http on a loopback IP literal, any port; nothing else is accepted."""
    parsed = urllib.parse.urlsplit(raw) if isinstance(raw, str) else None
    if (
        parsed is None
        or parsed.scheme != "http"
        or parsed.hostname not in ("127.0.0.1", "::1")
        or parsed.port is None
        or parsed.query
        or parsed.fragment
    ):
        raise invalid("redirect_uri must be http://127.0.0.1:PORT/PATH (a loopback listener)")
    return str(raw)


def oauth_client(integration: Integration) -> tuple[str, str, str]:
    """The provider's (authorize URL, token URL, client_id), or a clear refusal."""
    oauth = integration.oauth
    if oauth is None or not oauth.client_id:
        raise invalid(
            f"{integration.name} has no OAuth client configured: set "
            f'integrations.{integration.name}.oauth.client_id (a line client_id = "…" under '
            f"[integrations.{integration.name}.oauth] in the file 'kontext config path' names; "
            "kontextd applies the edit by itself), or connect with --secret-stdin"
        )
    return oauth.authorize_url, oauth.token_url, oauth.client_id


def start(core: Core, integration: Integration, redirect_uri: Any) -> dict[str, str]:
    """Begin a connect: remember verifier and state, return the URL the browser opens."""
    authorize_url, _, client_id = oauth_client(integration)
    redirect = _loopback_redirect(redirect_uri)
    verifier = secrets.token_urlsafe(48)  # RFC 7636 §4.1: 43-128 characters
    state = secrets.token_urlsafe(24)
    with core.gateway.lock:
        pending = core.gateway.pending
        for key in [k for k, p in pending.items() if p.expired]:
            del pending[key]
        if len(pending) >= MAX_PENDING:
            raise ApiError(wire.CONFLICT, "too many connects in progress; finish or wait 10 min")
        pending[state] = PendingConnect(integration.name, verifier, redirect)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect,
        "state": state,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    if integration.oauth and integration.oauth.scopes:
        params["scope"] = " ".join(integration.oauth.scopes)
    sep = "&" if "?" in authorize_url else "?"
    return {"authorize_url": f"{authorize_url}{sep}{urllib.parse.urlencode(params)}"}


def _take_pending(core: Core, name: str, state: Any) -> PendingConnect:
    if not isinstance(state, str) or not state:
        raise invalid("missing state")
    with core.gateway.lock:
        # Compare every key in constant time rather than trust dict hashing with a secret.
        match = next((k for k in list(core.gateway.pending) if hmac.compare_digest(k, state)), None)
        pending = core.gateway.pending.pop(match) if match else None
    if pending is None or pending.expired or pending.integration != name:
        raise invalid("unknown or expired connect attempt (state mismatch): start again")
    return pending


def finish(core: Core, integration: Integration, body: dict[str, Any]) -> dict[str, Any]:
    """Exchange the code (with the verifier) and store the refresh token."""
    pending = _take_pending(core, integration.name, body.get("state"))
    if body.get("error"):
        error = str(body["error"])[:60]
        raise ApiError(wire.UPSTREAM, f"the provider did not authorize the connection ({error})")
    code = body.get("code")
    if not isinstance(code, str) or not 0 < len(code) <= 2048:
        raise invalid("missing authorization code")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": pending.redirect_uri,
        "code_verifier": pending.verifier,
    }
    answer = token_request(core, integration, form)
    if answer.get("error"):
        raise ApiError(
            wire.UPSTREAM, f"the provider refused the code ({str(answer['error'])[:60]})"
        )
    token = access_from(integration.name, answer)
    refresh = answer.get("refresh_token")
    record: dict[str, Any] = {"kind": "oauth"}
    if connections.header_safe(refresh):
        record["refresh_token"] = refresh
    connections.save(core, integration, record, "oauth")
    with core.gateway.lock:
        core.gateway.access[integration.name] = token
    return {
        "integration": integration.name,
        "connected": True,
        "method": "oauth",
        "refreshable": "refresh_token" in record,
    }


def access_from(name: str, answer: dict[str, Any]) -> AccessToken:
    """The access token in a token response (RFC 6749 §5.1), validated."""
    value = answer.get("access_token")
    if not connections.header_safe(value):
        raise ApiError(wire.UPSTREAM, f"{name}: the provider's token response has no access_token")
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in > 0:
        return AccessToken(str(value), time.time() + expires_in)
    return AccessToken(str(value), None)  # the provider gave no expiry: use until refused


def token_request(core: Core, integration: Integration, form: dict[str, str]) -> dict[str, Any]:
    """POST to the provider's token endpoint; its JSON answer, errors included."""
    import httpx

    _, token_url, client_id = oauth_client(integration)
    try:
        response = core.gateway.client().post(
            token_url,
            data={**form, "client_id": client_id},
            # GitHub answers form-encoded unless asked for JSON.
            headers={"Accept": "application/json"},
            timeout=connections.TOKEN_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise ApiError(
            wire.UPSTREAM,
            f"{integration.name}: cannot reach the provider's token endpoint "
            f"({type(exc).__name__})",
        ) from None  # the exception text could carry the form (and so the code)
    try:
        answer = parsing.json_loads(response.content)
    except ValueError:  # not JSON, or parsing.TooDeep
        answer = None
    if not isinstance(answer, dict):
        raise ApiError(
            wire.UPSTREAM,
            f"{integration.name}: the token endpoint answered {response.status_code} without JSON",
        )
    if response.status_code >= 400 and not answer.get("error"):
        answer["error"] = f"http_{response.status_code}"
    return answer
