"""``/token`` for public clients (MCP clients): their authorization code and refresh tokens.

A public client has no secret (RFC 6749 §2.1). What ties a request to it is the
code — issued to its ``client_id`` and ``redirect_uri``, redeemable once, only
with the PKCE verifier — or the refresh token issued to it.

- **Code**: the consent grant is recorded as ``kontext consent grant`` records
  it (``consent.grants.record``: of this session, audited ``consent.granted``),
  for the agent the user chose, with the client and the resource; then the
  access token is minted by ``credentials.issue`` — the whole request path,
  resting on this very grant — with ``act`` the agent, ``client_id`` the MCP
  client and ``aud`` the resource (RFC 8707).
- **Refresh** (for clients that registered ``refresh_token``): the token rotates
  on every use and a reused one revokes its grant and family (OAuth 2.0 Security
  BCP §4.14.2); it never outlives its grant, and each use runs the request path
  again, so a revoked agent, a revoked grant or an ended session refuses it
  (``invalid_grant``) and the client goes back to ``/authorize``.
- ``resource``, when sent here, must be the one approved (RFC 8707 §2.2).
"""

from __future__ import annotations

import time
from typing import Any

from kontextd import credentials
from kontextd.consent import grants
from kontextd.consent.layer import effective_expiry, session_end
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.oauth import events, issue, public_clients, token
from kontextd.oauth.clients import OAuthError
from kontextd.oauth.resource_metadata import audience_for
from kontextd.oauth.state import digest, for_core
from kontextd.policy.request import CredentialRequest
from kontextd.store.oauth_sql import GrantRow


def handles(authorization: str | None, form: dict[str, str]) -> bool:
    """Is this a public client's request (no client authentication, a public id)?"""
    return (
        not authorization
        and "client_secret" not in form
        and public_clients.is_public_id(form.get("client_id"))
        and form.get("grant_type") in ("authorization_code", "refresh_token")
    )


def handle(core: Core, form: dict[str, str]) -> dict[str, Any]:
    """The RFC 6749 §5.1 answer, or an ``OAuthError`` (audited as a refusal)."""
    try:
        return _handle(core, form)
    except OAuthError as exc:
        events.record(
            core,
            "oauth.client_refused",
            endpoint="/token",
            client_id=form.get("client_id", "")[:200],
            grant_type=form.get("grant_type"),
            reason=f"{exc.error}: {exc.description}",
        )
        raise


def _handle(core: Core, form: dict[str, str]) -> dict[str, Any]:
    if not public_clients.enabled(core):
        raise OAuthError("invalid_client", public_clients.off_message(core), 401)
    client_id = form["client_id"]
    try:
        public_clients.lookup(core, client_id, fetch=False)
    except public_clients.UnknownClient as exc:
        raise OAuthError("invalid_client", str(exc), 401) from exc
    if form.get("grant_type") == "authorization_code":
        return _code_grant(core, client_id, form)
    return _refresh_grant(core, client_id, form)


def _code_grant(core: Core, client_id: str, form: dict[str, str]) -> dict[str, Any]:
    code = token.redeem_code(core, client_id, form)
    _same_resource(form, code.resource)
    grant, _ = grants.record(core, code)
    try:
        answer = _access(core, grant)
    except OAuthError:
        # Org policy or the agent changed since the page: the approval cannot stand.
        grants.revoke(core, "refused at redemption", grant_id=grant.id)
        raise
    if code.refresh:
        answer["refresh_token"] = _refresh_token(core, grant)
    return answer


def _refresh_grant(core: Core, client_id: str, form: dict[str, str]) -> dict[str, Any]:
    db = for_core(core).db
    row = db.refresh_by_hash(digest(form.get("refresh_token") or ""))
    if row is None or row.client_id != client_id:
        raise OAuthError("invalid_grant", "unknown refresh token")
    if row.revoked_at is not None or row.expires_at <= time.time():
        raise OAuthError("invalid_grant", "the refresh token is revoked or expired")
    if not db.mark_rotated(row.jti):
        count = token.revoke_family(core, row.family, "rotated refresh token reused")
        grants.revoke(core, "a rotated refresh token was reused", grant_id=row.family)
        events.record(core, "oauth.refresh_reused", client_id=client_id, tokens_revoked=count)
        raise OAuthError(
            "invalid_grant", "the refresh token was already used; its grant is revoked"
        )
    grant = db.grant(row.family)
    if grant is None or grant.revoked_at is not None:
        reason = grant.revoke_reason if grant is not None else "unknown"
        raise OAuthError("invalid_grant", f"the approval behind this token was revoked ({reason})")
    _same_resource(form, grant.resource)
    answer = _access(core, grant)
    answer["refresh_token"] = _refresh_token(core, grant)
    return answer


def _same_resource(form: dict[str, str], approved: str | None) -> None:
    asked = form.get("resource")
    if asked is not None and asked.rstrip("/") != (approved or "").rstrip("/"):
        raise OAuthError("invalid_target", f"this grant is for the resource {approved} only")


def _access(core: Core, grant: GrantRow) -> dict[str, Any]:
    """An access token on ``grant``, minted through the request path."""
    agent = core.store.agent(grant.agent)
    request = CredentialRequest(
        agent_name=grant.agent,
        agent=agent,
        user=grant.user,
        scopes=grant.scopes,
        target=grant.target,
        ttl=min(issue.ACCESS_TTL, agent.max_ttl if agent else issue.ACCESS_TTL),
        ttl_explicit=False,
        issuer=core.login_issuer,  # daemon-established facts only (policy/facts.py)
        external_login=core.login_external,
        grant=grant.id,
    )
    origin = credentials.Origin(
        kind=credentials.MCP,
        client_id=grant.client_id,
        audience=audience_for(core, grant.resource or "", grant.scopes),
    )
    try:
        cred = credentials.issue(core, request, origin)
    except credentials.Refused as exc:
        raise OAuthError("invalid_grant", exc.message, extra={"denied_by": exc.layer}) from exc
    except ApiError as exc:  # secrets refused, disk full: nothing was minted
        error = "temporarily_unavailable" if exc.status == 503 else "invalid_request"
        raise OAuthError(error, exc.message, 503 if exc.status == 503 else 400) from exc
    return {
        "access_token": cred.token,
        "token_type": "Bearer",
        "expires_in": int(cred.row.expires_at - cred.row.issued_at),
        "scope": " ".join(grant.scopes),
    }


def _refresh_token(core: Core, grant: GrantRow) -> str:
    """A rotating refresh token of the grant's family, ending when the grant does."""
    until = effective_expiry(grant, session_end(for_core(core).db))
    return issue.refresh_token(
        core,
        user=grant.user,
        client_id=grant.client_id or "",
        scopes=grant.scopes,
        family=grant.id,
        expires_at=until,
    )
