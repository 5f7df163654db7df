"""RFC 8693 token exchange at ``/token``: authority in, a narrower agent credential out.

The subject token is either

- an **agent credential** — exec's ``KONTEXT_TOKEN``, a consent code's token, or a
  token exchanged from one of these. Holding it is the authority: no client
  authentication is needed (if a client authenticates, it must be that agent).
  The new credential is for the same agent and user, and only narrows: its
  scopes are a subset of the subject's, its target the subject's (or a new one
  when the subject has none), its lifetime within the subject's remaining life;
- or the **user's own access token** from ``kontext login`` (no ``act``), which
  an authenticated agent client (``agent:NAME``, client secret) exchanges for a
  credential within what the user approved for that agent.

Either way the token is minted by ``credentials.issue``: the request path (org
policy, consent including the target, agent permissions and max TTL), stored
with its parent, audited, listed, on the monotonic clock, and it ends when its
parent, its grant or its agent does. The README ("Token exchange") documents
every parameter; in short:

======================  =====================================================
``subject_token``       the token above (required)
``subject_token_type``  ``urn:ietf:params:oauth:token-type:access_token``
``scope``               space-separated ``integration:scope``; default: all the
                        subject holds (user token: all approved for the agent)
``resource``            RFC 8707: an integration's gateway URL (``ISSUER/gw/NAME``)
                        or its name; narrows the token to that integration
``audience``            RFC 8693 §2.1: the integration's name (same effect)
``target``              kontext extension: the resource name (``acme/backend``)
``ttl``                 kontext extension: seconds (``60``) or a duration
                        (``60s``, ``5m``); default 60 s
======================  =====================================================

Errors (RFC 6749 §5.2, RFC 8693 §2.2.2): ``invalid_grant`` — the subject is not
active; ``invalid_scope`` — a scope the subject does not hold; ``invalid_target``
— another target or integration than the subject's, or a gateway ``resource``
whose integration is not connected (member ``not_connected`` names it); ``invalid_request`` — a
malformed parameter, or a layer of the request path refused (RFC 8693 §2.2.2:
"unacceptable based on policy"), with the extension member ``denied_by`` naming
the layer (``org_policy``, ``user_consent``, ``agent_permissions``) and the
description naming the layer and the reason as the CLI prints them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kontext.common import validate
from kontextd import agents, credentials
from kontextd.consent.layer import approved_scopes
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.gateway import connections
from kontextd.oauth import clients
from kontextd.oauth.clients import OAuthError
from kontextd.policy.request import CredentialRequest
from kontextd.store.oauth_sql import OAuthStore
from kontextd.store.rows import CredentialRow
from kontextd.tokens import verify

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
DEFAULT_TTL = 60  # seconds: per-request credentials (the library's default too)
MAX_CHAIN = 8  # actors in one ``act`` chain: how deep delegation may nest


@dataclass(frozen=True)
class Subject:
    """The subject token, resolved: who it acts for, what it holds, how long it has."""

    jti: str
    agent: str
    user: str
    client_id: str
    scopes: tuple[str, ...]
    target: str | None
    act: dict[str, Any] | None
    left: float
    parent_is_credential: bool


def exchange(
    core: Core, authorization: str | None, form: dict[str, str], secret: str
) -> dict[str, Any]:
    """RFC 8693 §2.1 request in, §2.2.1 response out (or an ``OAuthError``)."""
    _check_form(form)
    subject = _subject(core, authorization, form, secret)
    try:
        request = _request(core, subject, form)
    except OAuthError as exc:
        _audit_refusal(core, subject, exc.description)
        raise
    origin = credentials.Origin(
        kind=credentials.EXCHANGE,
        client_id=subject.client_id,
        parent=subject.jti,
        parent_left=subject.left,
        act=subject.act,
    )
    try:
        cred = credentials.issue(core, request, origin, _gateway_connected(core, form))
    except connections.NotConnected as exc:
        # RFC 8693 §2.2.2: unable to issue a token for the target service named.
        raise OAuthError("invalid_target", exc.message, extra={"not_connected": exc.name}) from exc
    except credentials.Refused as exc:
        raise OAuthError("invalid_request", exc.message, extra={"denied_by": exc.layer}) from exc
    except ApiError as exc:  # secrets refused, disk full: nothing was minted
        error = "temporarily_unavailable" if exc.status == 503 else "invalid_request"
        raise OAuthError(error, exc.message, 503 if exc.status == 503 else 400) from exc
    return {
        "access_token": cred.token,
        "issued_token_type": ACCESS_TYPE,
        "token_type": "Bearer",
        "expires_in": int(cred.row.expires_at - cred.row.issued_at),
        "scope": " ".join(cred.row.scopes),
    }


def _gateway_connected(core: Core, form: dict[str, str]) -> Callable[[], dict[str, Any]]:
    """When ``resource`` is an integration's gateway URL (RFC 8707: the token is for
    calls there), the gateway must be able to forward them: once every layer allowed,
    a broker integration without its upstream credential is ``NotConnected`` and
    nothing is minted (exec's token delivery refuses the same way). An exchange
    that names the integration only (``audience``) is not held to this."""
    prefix = f"{core.issuer}/gw/"
    resource = form.get("resource") or ""
    name = resource[len(prefix) :].rstrip("/") if resource.startswith(prefix) else None

    def check() -> dict[str, Any]:
        integration = core.config.integrations.get(name) if name else None
        if (
            integration is not None
            and integration.mode == "broker"
            and integration.routes
            and connections.stored(core, integration.name) is None
        ):
            raise connections.NotConnected(integration.name)
        return {}

    return check


def _check_form(form: dict[str, str]) -> None:
    if form.get("subject_token_type") != ACCESS_TYPE:
        raise OAuthError("invalid_request", f"subject_token_type must be {ACCESS_TYPE}")
    if form.get("requested_token_type", ACCESS_TYPE) != ACCESS_TYPE:
        raise OAuthError("invalid_request", f"requested_token_type must be {ACCESS_TYPE}")
    if "actor_token" in form or "actor_token_type" in form:
        # The actor is the subject's agent (or the authenticated agent client): an
        # agent can narrow its own delegation, never take on another identity.
        raise OAuthError("invalid_request", "actor_token is not supported")


def _subject(core: Core, authorization: str | None, form: dict[str, str], secret: str) -> Subject:
    # The signature check is cached per token (an agent exchanges the same subject
    # token again and again); expiry and revocation are checked every time.
    claims = verify.inspect_cached(core, form.get("subject_token") or "")
    if claims is None:
        raise OAuthError("invalid_grant", "the subject token is not active")
    jti = str(claims["jti"])
    cred = core.store.credential(jti)
    if cred is not None:
        return _agent_subject(core, authorization, form, secret, cred, claims)
    return _user_subject(core, authorization, form, secret, jti)


def _authenticates(authorization: str | None, form: dict[str, str]) -> bool:
    return bool(authorization) or "client_secret" in form


def _agent_subject(
    core: Core,
    authorization: str | None,
    form: dict[str, str],
    secret: str,
    cred: CredentialRow,
    claims: dict[str, Any],
) -> Subject:
    if _authenticates(authorization, form):
        client = clients.authenticate(core, secret, authorization, form)
        if client.agent is None or client.agent.name != cred.agent:
            raise OAuthError(
                "invalid_request", f"{client.client_id} cannot exchange agent:{cred.agent}'s token"
            )
    act = claims.get("act") if isinstance(claims.get("act"), dict) else None
    if _depth(act) >= MAX_CHAIN:
        raise OAuthError("invalid_request", f"the delegation chain is already {MAX_CHAIN} deep")
    return Subject(
        jti=cred.jti,
        agent=cred.agent,
        user=cred.user,
        client_id=cred.client_id or f"agent:{cred.agent}",
        scopes=cred.scopes,
        target=cred.target,
        act=act,
        left=core.store.seconds_left(cred),
        parent_is_credential=True,
    )


def _user_subject(
    core: Core, authorization: str | None, form: dict[str, str], secret: str, jti: str
) -> Subject:
    row = OAuthStore(core.store).token(jti)
    if row is None or row.client_id != clients.LOGIN_CLIENT:
        raise OAuthError("invalid_grant", "the subject token is neither a login nor an agent token")
    client = clients.authenticate(core, secret, authorization, form)
    if client.agent is None:
        raise OAuthError("invalid_client", "an agent client must act on the user's token", 401)
    return Subject(
        jti=jti,
        agent=client.agent.name,
        user=row.user,
        client_id=client.client_id,
        scopes=approved_scopes(OAuthStore(core.store), row.user, client.agent.name),
        target=None,
        act=None,
        left=row.expires_at - time.time(),
        parent_is_credential=False,
    )


def _depth(act: dict[str, Any] | None) -> int:
    depth = 0
    while isinstance(act, dict) and depth <= MAX_CHAIN:
        depth += 1
        act = act.get("act")
    return depth


def _request(core: Core, subject: Subject, form: dict[str, str]) -> CredentialRequest:
    """What the exchange asks the layers for, narrowed from the subject."""
    if subject.left < 1:
        raise OAuthError("invalid_grant", "the subject token has expired")
    only = _resource(core, form)
    scopes = _scopes(core, subject, form, only)
    agent = core.store.agent(subject.agent)
    ttl = _ttl(form.get("ttl"))
    default = min(DEFAULT_TTL, agent.max_ttl) if agent is not None else DEFAULT_TTL
    return CredentialRequest(
        agent_name=subject.agent,
        agent=agent,
        user=subject.user,
        scopes=scopes,
        target=_target(subject, form.get("target")),
        ttl=ttl if ttl is not None else default,
        ttl_explicit=ttl is not None,
        issuer=core.login_issuer,  # daemon-established facts only (policy/facts.py)
        external_login=core.login_external,
    )


def _resource(core: Core, form: dict[str, str]) -> str | None:
    """RFC 8707 ``resource`` / RFC 8693 ``audience``: the one integration to narrow to."""
    named = {v for v in (form.get("resource"), form.get("audience")) if v is not None}
    found = set()
    for value in named:
        name = value.removeprefix(f"{core.issuer}/gw/").rstrip("/")
        if name not in core.config.integrations:
            raise OAuthError(
                "invalid_target",
                "resource must be an integration's gateway URL "
                f"({core.issuer}/gw/NAME) or its name",
            )
        found.add(name)
    if len(found) > 1:
        raise OAuthError("invalid_target", "resource and audience name different integrations")
    return found.pop() if found else None


def _scopes(
    core: Core, subject: Subject, form: dict[str, str], only: str | None
) -> tuple[str, ...]:
    held = tuple(s for s in subject.scopes if only is None or s.partition(":")[0] == only)
    asked = tuple(dict.fromkeys((form.get("scope") or " ".join(held)).split()))
    if not asked:
        raise OAuthError("invalid_scope", f"agent:{subject.agent} holds no scope to exchange")
    try:  # known integration:scope words only (a bad one is quoted and cut short)
        agents.check_scopes(core, list(asked), field_name="scope")
    except ApiError as exc:
        raise OAuthError("invalid_scope", exc.message) from exc
    outside = [s for s in asked if only is not None and s.partition(":")[0] != only]
    if outside:
        raise OAuthError("invalid_target", f"resource {only} does not cover {' '.join(outside)}")
    if subject.parent_is_credential:
        extra = [s for s in asked if s not in held]
        if extra:
            raise OAuthError(
                "invalid_scope",
                f"scopes can only shrink: the subject token lacks {' '.join(extra)}",
            )
    return asked


def _target(subject: Subject, raw: str | None) -> str | None:
    """A target only narrows: a subject with one keeps it; one without may gain one."""
    if raw is not None:
        try:
            raw = validate.target(raw)
        except validate.InvalidInput as exc:
            raise OAuthError("invalid_target", str(exc)) from exc
    if subject.target is None:
        return raw
    if raw is not None and raw.lower() != subject.target.lower():
        raise OAuthError(
            "invalid_target",
            f"the subject token is for target {subject.target}; an exchange cannot change it",
        )
    return subject.target


def _ttl(raw: str | None) -> int | None:
    """``ttl``: whole seconds or a duration, within what exec accepts."""
    if raw is None:
        return None
    try:
        return validate.duration(f"{raw}s" if raw.isdigit() else raw)
    except validate.InvalidInput as exc:
        raise OAuthError("invalid_request", f"ttl: {exc}") from exc


def _audit_refusal(core: Core, subject: Subject, reason: str) -> None:
    """An exchange refused before the layers (it tried to widen): audited like a denial."""
    with core.store.transaction() as tx:
        tx.append_event(
            {
                "event": "credential.denied",
                "agent": {"id": f"agent:{subject.agent}"},
                "user": {"id": subject.user},
                "kind": credentials.EXCHANGE,
                "parent": subject.jti,
                "client_id": subject.client_id,
                "reason": reason,
            }
        )
