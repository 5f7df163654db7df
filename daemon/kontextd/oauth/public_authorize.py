"""Front-channel ``/authorize`` for public clients (MCP clients), and the user's answer.

MCP clients do not push their requests (RFC 9126) and hold no secret, so the
request comes straight in the browser's URL (RFC 6749 §4.1.1): ``client_id``,
``redirect_uri``, ``state``, PKCE (RFC 7636, S256 only), ``scope`` and the
RFC 8707 ``resource`` — the MCP server the token will be for. Checks, in the
order of §4.1.2.1:

1. ``mcp.clients`` allows public clients, the client is known (registered, or a
   metadata document that passes ``client_metadata``), the redirect URI is one
   it registered — else an error page, never a redirect;
2. ``response_type=code``, S256 PKCE, known ``integration:scope`` words
   (``offline_access`` is understood and dropped: refresh tokens follow the
   client's registered grant types), a local ``resource`` the scopes fit — else
   the client gets the error at its redirect URI, with ``state`` and ``iss``;
3. the page (``public_pages``). The user's answer creates, on approval, a code
   for the chosen agent — or first the new agent, with exactly these scopes —
   which the client redeems at ``/token`` (``public_token``), where the grant is
   recorded as ``kontext consent grant`` records it.

Every refusal, denial and unanswered page is audited — the form's too (a wrong
CSRF token, an answer to a request already decided, an agent the form may not
pick): ``oauth.client_refused`` naming the client.
"""

from __future__ import annotations

import hmac
import re
import time
import urllib.parse
from dataclasses import dataclass, replace
from typing import Any

from kontext.common import validate
from kontextd import agents
from kontextd.consent.layer import session_id
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.oauth import events, pages, public_clients, public_pages
from kontextd.oauth.authorize import CHALLENGE, DEFAULT_GRANT, PageError, _org_allows
from kontextd.oauth.clients import Client, OAuthError
from kontextd.oauth.public_clients import PublicClient, UnknownClient
from kontextd.oauth.resource_metadata import audience_for
from kontextd.oauth.state import Code, Pending, for_core
from kontextd.store.clients_sql import ClientStore
from kontextd.store.oauth_sql import OAuthStore
from kontextd.store.rows import AgentRow

REFRESH_WORD = "offline_access"  # OIDC Core §11; MCP SDKs add it (SEP-2207)


@dataclass(frozen=True)
class Answer:
    """A page to show (``html``), or a redirect back to the client (``location``)."""

    status: int
    html: str = ""
    form_target: str | None = None
    location: str | None = None


def show(core: Core, query: dict[str, str]) -> Answer:
    """``GET /authorize?client_id=…`` without a pushed ``request_uri``."""
    client_id = query.get("client_id")
    if not public_clients.enabled(core):
        _refused(core, client_id, public_clients.off_message(core))
        raise PageError(public_clients.off_message(core))
    try:
        client = public_clients.lookup(core, client_id)
        redirect = public_clients.match_redirect(client, query.get("redirect_uri"))
    except UnknownClient as exc:
        _refused(core, client_id, str(exc))
        raise PageError(f"this application cannot be authorized: {exc}") from exc
    try:
        scopes, resource = _checked(core, query)
    except OAuthError as exc:
        _refused(core, client.client_id, exc.description)
        return _back(core, redirect, query.get("state"), exc.error, exc.description)
    pending = for_core(core).push(
        client_id=client.client_id,
        redirect_uri=redirect,
        state=query.get("state"),
        nonce=None,
        challenge=query["code_challenge"],
        scopes=scopes,
        target=None,
        duration=DEFAULT_GRANT,
        client_name=client.name,
        resource=resource,
        refresh=client.refresh,
    )
    html = _render(core, pending, client, None, _suggested_name(core, client.name), None)
    return Answer(200, html, public_clients.form_action(redirect))


def _checked(core: Core, query: dict[str, str]) -> tuple[tuple[str, ...], str]:
    """The request's scopes and resource, or the ``OAuthError`` to send back."""
    if query.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "only response_type=code is supported")
    if "request" in query or "request_uri" in query:
        raise OAuthError("invalid_request", "request objects are not supported")
    if query.get("code_challenge_method") != "S256":  # RFC 7636 §4.2: never plain
        raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")
    if not CHALLENGE.fullmatch(query.get("code_challenge") or ""):
        raise OAuthError("invalid_request", "code_challenge must be a base64url SHA-256")
    words = [w for w in dict.fromkeys((query.get("scope") or "").split()) if w != REFRESH_WORD]
    if not words:
        raise OAuthError("invalid_scope", "name the scopes to ask for (integration:scope)")
    try:
        scopes = tuple(agents.check_scopes(core, words, field_name="scope"))
    except ApiError as exc:
        raise OAuthError("invalid_scope", exc.message) from exc
    resource = query.get("resource")
    if not resource:
        raise OAuthError("invalid_target", "name the server the token is for: resource= (RFC 8707)")
    audience_for(core, resource, scopes)  # raises invalid_target
    return scopes, resource


def decide(core: Core, form: dict[str, str]) -> Answer:
    """The page's POST for a public client's request."""
    state = for_core(core)
    pending = state.pending(form.get("request_uri"))
    if pending is None or not pending.public:
        raise PageError("this request is unknown, expired or already used")
    try:
        return _decide(core, pending, form)
    except PageError as exc:  # a forged, replayed or raced answer: on the record
        _refused(core, pending.client_id, f"consent form refused: {exc}")
        raise


def _decide(core: Core, pending: Pending, form: dict[str, str]) -> Answer:
    state = for_core(core)
    if not hmac.compare_digest((form.get("csrf") or "").encode(), pending.csrf.encode()):
        raise PageError("the form's CSRF token is wrong; start again")
    if form.get("decision") != "approve":
        if not state.finish(pending):
            raise PageError("this request was already decided")
        _denied(core, pending)
        return _back(
            core,
            pending.redirect_uri,
            pending.state,
            "access_denied",
            "the user denied the request",
        )
    duration = _duration(form.get("grant_duration"))
    try:
        agent = _chosen_agent(core, pending, form)
    except PageError as exc:  # the page again, the request still open; audited
        _refused(core, pending.client_id, f"consent form refused: {exc}")
        client = public_clients.lookup(core, pending.client_id, fetch=False)
        client = replace(client, name=pending.client_name or client.name)
        chosen = form.get("agent") or None
        html = _render(
            core, pending, client, chosen, form.get("new_agent") or "", str(exc), duration
        )
        return Answer(400, html, public_clients.form_action(pending.redirect_uri))
    if not state.finish(pending):
        raise PageError("this request was already decided")
    if pending.client_id.startswith(public_clients.REGISTERED_PREFIX):
        ClientStore(core.store).touch(pending.client_id)
    code = state.new_code(_code(core, pending, agent, duration))
    return _back(core, pending.redirect_uri, pending.state, None, None, code=code)


def _chosen_agent(core: Core, pending: Pending, form: dict[str, str]) -> str:
    """The agent the user picked, or the new one they named (created now, audited);
    ``PageError`` (the page is shown again, the request still open) when it cannot be."""
    name = form.get("agent") or ""
    agent = _existing(core, name, pending.scopes) if name else _new(core, form, pending.scopes)
    try:  # what org policy would refuse is never approved (``authorize._org_allows``)
        _org_allows(core, Client(f"agent:{agent.name}", agent), pending.scopes, None)
    except OAuthError as exc:
        raise PageError(exc.description) from exc
    if core.store.agent(agent.name) is None:
        try:
            agents.create(core, {"name": agent.name, "allow": list(pending.scopes)})
        except ApiError as exc:
            raise PageError(exc.message) from exc
    return agent.name


def _existing(core: Core, name: str, scopes: tuple[str, ...]) -> AgentRow:
    agent = core.store.agent(name)
    if agent is None or agent.disabled_at is not None:
        raise PageError(f"agent:{name[:63]} does not exist or is disabled; pick another")
    missing = [s for s in scopes if s not in agent.scopes]
    if missing:
        raise PageError(f"agent:{name} may not use {' '.join(missing)} (its permissions)")
    return agent


def _new(core: Core, form: dict[str, str], scopes: tuple[str, ...]) -> AgentRow:
    """The agent the user named, not created yet: exactly the requested scopes."""
    try:
        name = validate.agent_name((form.get("new_agent") or "").strip())
    except validate.InvalidInput as exc:
        raise PageError(str(exc)) from exc
    if core.store.agent(name) is not None:
        raise PageError(f"agent:{name} already exists: pick it above, or another name")
    return AgentRow(name, name, agents.DEFAULT_MAX_TTL, time.time(), None, None, scopes)


def _duration(raw: str | None) -> int:
    allowed = {seconds for seconds, _ in public_pages.DURATIONS}
    return int(raw) if raw is not None and raw.isdigit() and int(raw) in allowed else DEFAULT_GRANT


def _code(core: Core, pending: Pending, agent: str, duration: int) -> Code:
    return Code(
        client_id=pending.client_id,
        redirect_uri=pending.redirect_uri,
        challenge=pending.challenge,
        nonce=None,
        scopes=pending.scopes,
        target=None,
        duration=duration,
        user=core.user,
        name=None,
        expires_at=time.time() + 60,
        agent=agent,
        client_name=pending.client_name,
        resource=pending.resource,
        refresh=pending.refresh,
        session=session_id(for_core(core).db),
    )


def _render(
    core: Core,
    pending: Pending,
    client: PublicClient,
    chosen: str | None,
    new_name: str,
    error: str | None,
    duration: int = DEFAULT_GRANT,
) -> str:
    cat = core.config.integrations
    candidates = [
        a
        for a in core.store.agents()
        if a.disabled_at is None and set(pending.scopes) <= set(a.scopes)
    ]
    ask = public_pages.Ask(
        request_uri=pending.request_uri,
        csrf=pending.csrf,
        client_name=client.name,
        client_id=client.client_id,
        published_at=client.published_at,
        user=core.user,
        resource=pending.resource or "",
        granted=pages.scope_lines(pending.scopes, cat),
        refused=pages.not_granted(pending.scopes, cat),
        integrations=tuple(
            dict.fromkeys(
                cat[s.partition(":")[0]].display_name
                for s in pending.scopes
                if s.partition(":")[0] in cat
            )
        ),
    )
    chosen = chosen or _previous_agent(core, client.client_id)
    return public_pages.consent_page(ask, candidates, chosen, new_name, duration, error)


def _previous_agent(core: Core, client_id: str) -> str | None:
    """The agent this client acted as under a live grant of this session, if any."""
    db = OAuthStore(core.store)
    current = session_id(db)
    for grant in reversed(db.live_grants(core.user)):
        if grant.client_id == client_id and grant.session_id == current:
            return grant.agent
    return None


def _suggested_name(core: Core, client_name: str) -> str:
    """A free agent name made from the client's name (``Claude Desktop`` → ``claude-desktop``)."""
    base = re.sub(r"[^a-z0-9]+", "-", client_name.lower()).strip("-")[:50] or "mcp-client"
    name, n = base, 1
    while core.store.agent(name) is not None:
        n += 1
        name = f"{base}-{n}"
    return name


def _back(
    core: Core,
    redirect: str,
    state: str | None,
    error: str | None,
    description: str | None,
    code: str | None = None,
) -> Answer:
    """The redirect to the client: a code or an error, with ``state`` and RFC 9207 ``iss``."""
    params: dict[str, Any] = {"code": code} if code else {"error": error}
    if description:
        params["error_description"] = description
    if state is not None:
        params["state"] = state
    params["iss"] = core.issuer
    sep = "&" if "?" in redirect else "?"
    return Answer(303, location=redirect + sep + urllib.parse.urlencode(params))


def _refused(core: Core, client_id: str | None, reason: str) -> None:
    events.record(
        core,
        "oauth.client_refused",
        endpoint="/authorize",
        client_id=(client_id or "")[:200],
        reason=reason[:300],
    )


def _denied(core: Core, pending: Pending) -> None:
    events.record(
        core,
        "consent.denied",
        client_id=pending.client_id,
        client_name=pending.client_name,
        scopes=list(pending.scopes),
        resource=pending.resource,
    )
