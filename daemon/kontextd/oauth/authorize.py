"""Pushed authorization requests (RFC 9126), ``/authorize`` and the user's decision.

Only pushed requests can reach a page: ``/authorize`` without a ``request_uri``
from our PAR endpoint — which requires the client secret only this OS user can
read — is an error page. An unknown client or a bad redirect is an error page
too, never a redirect (RFC 6749 §4.1.2.1).
"""

from __future__ import annotations

import hmac
import os
import pwd
import re
import time
import urllib.parse
from dataclasses import replace

from kontext.common import validate
from kontextd.consent.layer import session_id
from kontextd.core import Core, local_account
from kontextd.oauth import pages
from kontextd.oauth.clients import LOGIN_CLIENT, Client, OAuthError, check_redirect
from kontextd.oauth.issue import ID_TOKEN_ALGS
from kontextd.oauth.state import Code, Pending, for_core
from kontextd.policy.request import CredentialRequest

LOGIN_SCOPES = ("openid", "profile", "email", "offline_access")
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_GRANT = 30 * 86400
DEFAULT_GRANT = 3600


class PageError(Exception):
    """Shown as an error page; the user agent is never redirected."""


def _scopes_for(core: Core, client: Client, raw: str | None) -> tuple[str, ...]:
    words = tuple(dict.fromkeys((raw or "").split()))
    if client.is_login:
        if "openid" not in words or not set(words) <= set(LOGIN_SCOPES):
            raise OAuthError("invalid_scope", f"login scopes are {' '.join(LOGIN_SCOPES)}")
        return words
    assert client.agent is not None
    if not words:
        raise OAuthError("invalid_scope", "name the scopes to approve")
    for scope in words:
        if scope not in client.agent.scopes:
            raise OAuthError(
                "invalid_scope", f"{client.client_id} may not use {scope} (agent permissions)"
            )
    return words


def push(core: Core, client: Client, form: dict[str, str]) -> Pending:
    """Validate a pushed request and keep it for ``/authorize``."""
    if form.get("request_uri") or form.get("request"):
        raise OAuthError("invalid_request", "request and request_uri are not accepted here")
    if form.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "only response_type=code is supported")
    method = form.get("code_challenge_method")
    if method != "S256":  # RFC 7636 §4.2: plain is refused; a missing method means plain
        raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")
    challenge = form.get("code_challenge") or ""
    if not CHALLENGE.fullmatch(challenge):
        raise OAuthError("invalid_request", "code_challenge must be a base64url SHA-256")
    if client.is_login and core.config.require_external_issuer:
        raise OAuthError(
            "access_denied",
            f"login.require_external_issuer is true in {core.paths.config_file}: "
            "sign in with 'kontext login --issuer URL'",
        )
    scopes = _scopes_for(core, client, form.get("scope"))
    target = form.get("target")
    if target is not None:
        try:
            target = validate.target(target)
        except validate.InvalidInput as exc:
            raise OAuthError("invalid_target", str(exc)) from exc
    resource = form.get("resource")
    integrations = {s.partition(":")[0] for s in scopes}
    if resource is not None and not client.is_login and resource not in integrations:
        raise OAuthError("invalid_target", "resource must be the integration of the scopes")
    if client.agent is not None:
        _org_allows(core, client, scopes, target)
    # OIDC Registration §2's client metadata, sent with the (authenticated) pushed
    # request: kontext registers no clients, so the request is where a client asks.
    id_token_alg = form.get("id_token_signed_response_alg", ID_TOKEN_ALGS[0])
    if id_token_alg not in ID_TOKEN_ALGS:
        raise OAuthError(
            "invalid_request",
            f"id_token_signed_response_alg must be one of {', '.join(ID_TOKEN_ALGS)}",
        )
    duration = form.get("grant_duration", str(DEFAULT_GRANT))
    if not duration.isdigit() or not 60 <= int(duration) <= MAX_GRANT:
        raise OAuthError("invalid_request", "grant_duration must be 60 to 2592000 seconds")
    return for_core(core).push(
        client_id=client.client_id,
        redirect_uri=check_redirect(form.get("redirect_uri")),
        state=form.get("state"),
        nonce=form.get("nonce"),
        challenge=challenge,
        scopes=scopes,
        target=target,
        duration=int(duration),
        id_token_alg=id_token_alg,
    )


def _org_allows(core: Core, client: Client, scopes: tuple[str, ...], target: str | None) -> None:
    """A grant is bounded by org policy: what it would refuse is never put to the user.

    A grant outlives this request, and whether a later exec runs at a terminal is
    not known yet: what org policy would allow either way may be approved (each
    exec is evaluated again with its own facts)."""
    org = core.org_policy
    assert client.agent is not None
    if org is None:
        return
    request = CredentialRequest(
        agent_name=client.agent.name,
        agent=client.agent,
        user=core.user,
        scopes=scopes,
        target=target,
        ttl=min(600, client.agent.max_ttl),
        ttl_explicit=False,
        issuer=core.login_issuer,
        external_login=core.login_external,
    )
    verdicts = [org.evaluate(replace(request, interactive=at_tty)) for at_tty in (False, True)]
    if not any(v.allowed for v in verdicts):
        raise OAuthError("invalid_scope", f"denied by org policy: {verdicts[0].reason}")


def os_display_name() -> str | None:
    """The account's full name from the password database (GECOS), if it has one."""
    try:
        gecos = pwd.getpwuid(os.getuid()).pw_gecos.split(",", 1)[0].strip()
    except KeyError:
        return None
    return gecos[:100] or None


def show(core: Core, query: dict[str, str]) -> tuple[str, Pending]:
    """The page for ``GET /authorize?client_id=…&request_uri=…``."""
    if not query.get("request_uri"):
        raise PageError(
            "authorization requests must be pushed first (RFC 9126); "
            "start from 'kontext login' or 'kontext consent grant'"
        )
    pending = for_core(core).pending(query.get("request_uri"))
    if pending is None:
        raise PageError("this request is unknown, expired or already used")
    if query.get("client_id") != pending.client_id:
        raise PageError("unknown client for this request")
    if "redirect_uri" in query and query["redirect_uri"] != pending.redirect_uri:
        raise PageError("redirect_uri does not match the pushed request")
    if pending.client_id.startswith("agent:"):
        agent = core.store.agent(pending.client_id[6:])
        if agent is None or agent.disabled_at is not None:
            raise PageError("unknown client")
        cat = core.config.integrations
        html = pages.consent_page(
            pending.request_uri,
            pending.csrf,
            agent.display_name,
            pending.client_id,
            core.user,
            pages.scope_lines(pending.scopes, cat),
            pages.not_granted(pending.scopes, cat),
            pending.target,
            pending.duration,
        )
        return html, pending
    return pages.login_page(pending.request_uri, pending.csrf, local_account()), pending


def decide(core: Core, form: dict[str, str]) -> str:
    """The form's POST: returns the redirect (with ``code`` or ``error``, and ``iss``)."""
    state = for_core(core)
    pending = state.pending(form.get("request_uri"))
    if pending is None:
        raise PageError("this request is unknown, expired or already used")
    if not hmac.compare_digest((form.get("csrf") or "").encode(), pending.csrf.encode()):
        raise PageError("the form's CSRF token is wrong; start again")
    if not state.finish(pending):
        raise PageError("this request was already decided")
    params: dict[str, str] = {}
    if form.get("decision") == "approve":
        params["code"] = state.new_code(_code(core, pending, form))
    else:
        params["error"] = "access_denied"
        params["error_description"] = "the user denied the request"
    if pending.state is not None:
        params["state"] = pending.state
    params["iss"] = core.issuer  # RFC 9207
    sep = "&" if "?" in pending.redirect_uri else "?"
    return pending.redirect_uri + sep + urllib.parse.urlencode(params)


def _code(core: Core, pending: Pending, form: dict[str, str]) -> Code:
    """The code's user: for an agent's consent, whoever the session names; for the
    login client, the OS account this daemon runs as — the embedded issuer has no
    password to check, so it asserts only what the kernel says (nothing typed on
    the page can change it; an identity from elsewhere needs ``--issuer``)."""
    user, name = core.user, None
    if pending.client_id == LOGIN_CLIENT:
        user, name = f"user:{local_account()}", os_display_name()
    return Code(
        client_id=pending.client_id,
        redirect_uri=pending.redirect_uri,
        challenge=pending.challenge,
        nonce=pending.nonce,
        scopes=pending.scopes,
        target=pending.target,
        duration=pending.duration,
        user=user,
        name=name,
        id_token_alg=pending.id_token_alg,
        expires_at=time.time() + 60,
        session=session_id(for_core(core).db),
    )
