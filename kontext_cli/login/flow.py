"""Run one authorization in the browser: push (or build) the request, wait for the callback.

Used by ``kontext login`` (embedded issuer or any OIDC provider) and by agent
consent. The URL is always printed, and opened with ``webbrowser`` (which
honours ``$BROWSER``) unless ``--no-browser``.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
import webbrowser
from typing import Any

import httpx

from kontext.common import parsing
from kontext_cli import errors
from kontext_cli.login.callback import CallbackResult, CallbackServer, signals_to_main_thread
from kontext_cli.login.pkce import PkceSession

TIMEOUT = 10.0


LoginFailed = errors.LoginFailed


def why_nobody_can_answer() -> str | None:
    """Why no person can answer a browser page here, or None if one can.

    The same rule as ``kontext exec``'s: a person is at a terminal (stdin is a
    TTY) and this is not CI (``CI`` set to 1/true/yes, as CI services do).
    """
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return f"this is CI (CI={os.environ['CI']})"
    if not sys.stdin.isatty():
        return "there is no terminal (stdin is not a TTY)"
    return None


def require_person(action: str, *, open_browser: bool, beforehand: str) -> None:
    """Fail at once, instead of waiting minutes, when nobody can answer the page.

    ``--no-browser`` (``open_browser`` False) is the explicit "print the URL and
    wait: I will open it elsewhere", so it always waits.
    """
    reason = why_nobody_can_answer() if open_browser else None
    if reason is not None:
        raise LoginFailed(
            f"{action} needs you in a browser, but {reason}: {beforehand}, "
            "or pass --no-browser to print the URL and wait for it"
        )


def get_json(url: str) -> dict[str, Any]:
    try:
        answer = httpx.get(url, timeout=TIMEOUT)
        value = parsing.json_loads(answer.content)
    except (httpx.HTTPError, ValueError) as exc:
        raise LoginFailed(f"cannot read {url}: {type(exc).__name__}") from exc
    if answer.status_code != 200 or not isinstance(value, dict):
        raise LoginFailed(f"{url} answered HTTP {answer.status_code}")
    return value


def discover(issuer: str) -> dict[str, Any]:
    meta = get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if meta.get("issuer") != issuer:
        raise LoginFailed(f"the provider says its issuer is {meta.get('issuer')!r}, not {issuer!r}")
    if "S256" not in meta.get("code_challenge_methods_supported", ["S256"]):
        raise LoginFailed("the provider does not support PKCE with S256")
    return meta


def push(meta: dict[str, Any], client_id: str, secret: str | None, params: dict[str, str]) -> str:
    """RFC 9126 §2.1: push the request; returns the request_uri.

    With ``secret`` the client authenticates (client_secret_basic, the embedded
    issuer); without, it is a public client, which §2 allows to push too: it
    names itself with ``client_id`` in the form, like at the token endpoint."""
    auth = (urllib.parse.quote(client_id, safe=""), secret) if secret is not None else None
    try:
        answer = httpx.post(
            meta["pushed_authorization_request_endpoint"],
            data={**params, "client_id": client_id},
            auth=auth,
            timeout=TIMEOUT,
        )
        value = parsing.json_loads(answer.content)
    except (httpx.HTTPError, ValueError) as exc:
        raise LoginFailed(f"the authorization request failed: {type(exc).__name__}") from exc
    if not isinstance(value, dict):
        raise LoginFailed(f"the issuer answered the pushed request with HTTP {answer.status_code}")
    if answer.status_code not in (200, 201) or not isinstance(value.get("request_uri"), str):
        why = value.get("error_description") or value.get("error") or f"HTTP {answer.status_code}"
        raise LoginFailed(f"the issuer refused the request: {str(why)[:200]}")
    return str(value["request_uri"])


def _front_channel_query(
    meta: dict[str, Any], client_id: str, secret: str | None, params: dict[str, str]
) -> dict[str, str]:
    """What goes in the browser's URL: a pushed request's reference where the issuer
    takes pushed requests (RFC 9126 §4), else the request itself.

    The embedded issuer and any provider that sets
    ``require_pushed_authorization_requests`` get a push or nothing; a provider
    that merely offers PAR and refuses this push gets the plain request."""
    if not meta.get("pushed_authorization_request_endpoint"):
        if meta.get("require_pushed_authorization_requests"):
            raise LoginFailed("the provider requires pushed requests but names no PAR endpoint")
        return params
    try:
        request_uri = push(meta, client_id, secret, params)
    except LoginFailed:
        if secret is not None or meta.get("require_pushed_authorization_requests"):
            raise
        return params
    return {"client_id": client_id, "request_uri": request_uri}


def authorize(
    meta: dict[str, Any],
    client_id: str,
    extra: dict[str, str],
    *,
    secret: str | None,
    open_browser: bool,
    timeout: float,
    callback_path: str | None = None,
    action: str = "login",
) -> tuple[CallbackResult, PkceSession, str]:
    """Returns the accepted callback, the PKCE session and the redirect URI used.

    ``action`` names what is waited for in the messages ("login", "consent for
    agent:x"); Ctrl-C while waiting cancels it (exit 130), nothing changed.
    """
    session = PkceSession()
    issuer = meta["issuer"] if meta.get("authorization_response_iss_parameter_supported") else None
    try:
        with CallbackServer(session, issuer, callback_path) as server:
            url = _authorization_url(meta, client_id, extra, secret, session, server.redirect_uri)
            print(
                f"Open this URL in your browser to continue:\n  {url}", file=sys.stderr, flush=True
            )
            if open_browser:
                webbrowser.open(url)
            result = _wait(server, timeout)
    except (KeyboardInterrupt, errors.Cancelled):
        raise errors.Cancelled(f"{action} cancelled (Ctrl-C); nothing changed") from None
    if result is None:
        raise LoginFailed(
            f"{action}: no answer from the browser within {timeout:.0f}s; nothing changed"
        )
    return result, session, server.redirect_uri


def _authorization_url(
    meta: dict[str, Any],
    client_id: str,
    extra: dict[str, str],
    secret: str | None,
    session: PkceSession,
    redirect_uri: str,
) -> str:
    """The URL to open: a pushed request's ``request_uri`` (RFC 9126), else every parameter."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": session.state,
        "code_challenge": session.challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    if "openid" in extra.get("scope", "").split():
        params["nonce"] = session.nonce
    query = _front_channel_query(meta, client_id, secret, params)
    return str(meta["authorization_endpoint"]) + "?" + urllib.parse.urlencode(query)


def _wait(server: CallbackServer, timeout: float) -> CallbackResult | None:
    if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        from rich.console import Console

        status = Console(stderr=True, emoji=False).status(
            "Waiting for the browser… (Ctrl-C cancels)"
        )
        try:  # stopped whenever a Ctrl-C lands: a live display left running swallows stderr
            with signals_to_main_thread():  # the spinner's thread must not take a Ctrl-C
                status.start()
            return server.wait(timeout)
        finally:
            status.stop()
    return server.wait(timeout)
