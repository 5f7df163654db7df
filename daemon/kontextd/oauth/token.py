"""``/token``: authorization_code, refresh_token and token exchange (RFC 8693).

- Codes are single use, live 60 s and are bound to client, redirect and PKCE
  challenge; a replayed code revokes everything it issued (RFC 6749 §4.1.2).
- Refresh tokens rotate; presenting a rotated one revokes its whole family
  (OAuth 2.0 Security BCP §4.14.2).
- Token exchange (RFC 8693, ``kontextd.oauth.exchange``) turns an agent's
  credential, or the user's token for an agent client, into a narrower agent
  credential minted through the request path like exec's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from kontextd import credentials
from kontextd.consent import grants
from kontextd.core import Core
from kontextd.oauth import clients, exchange, issue
from kontextd.oauth import events as audit_events
from kontextd.oauth.clients import OAuthError
from kontextd.oauth.state import Code, digest, for_core
from kontextd.tokens import verify

EXCHANGE = exchange.GRANT_TYPE


def handle(core: Core, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
    grant = form.get("grant_type")
    if grant == EXCHANGE:  # first: the per-request grant (public clients never send it)
        return exchange.exchange(core, authorization, form, for_core(core).secret)
    from kontextd.oauth import public_token  # it builds on this module

    if public_token.handles(authorization, form):
        return public_token.handle(core, form)
    if grant == "authorization_code":
        return _code_grant(core, authorization, form)
    if grant == "refresh_token":
        return _refresh_grant(core, authorization, form)
    raise OAuthError("unsupported_grant_type", "unsupported grant_type")


def _client(core: Core, authorization: str | None, form: dict[str, str]) -> clients.Client:
    return clients.authenticate(core, for_core(core).secret, authorization, form)


def _s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def _code_grant(core: Core, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
    client = _client(core, authorization, form)
    code = redeem_code(core, client.client_id, form)
    if client.is_login:
        return _login_tokens(core, code)
    return grants.from_code(core, code)


def redeem_code(core: Core, client_id: str, form: dict[str, str]) -> Code:
    """Check ``code``, ``code_verifier`` and ``redirect_uri`` for ``client_id`` and use
    the code up (RFC 6749 §4.1.3, RFC 7636 §4.6); a replay revokes what it issued."""
    state = for_core(core)
    code = state.take_code(form.get("code") or "")
    if code is None or code.expires_at <= time.time():
        raise OAuthError("invalid_grant", "the code is unknown or expired")
    if code.used:
        revoked = revoke_family(core, code.family, "authorization code replayed")
        ended = grants.revoke(core, "authorization code replayed", grant_id=code.family)
        audit_events.record(
            core,
            "oauth.code_replayed",
            client_id=code.client_id,
            tokens_revoked=revoked,
            grants_revoked=len(ended),
        )
        raise OAuthError("invalid_grant", "the code was already used; what it issued is revoked")
    code.used = True  # single use, even when the checks below fail
    verifier = form.get("code_verifier") or ""
    if client_id != code.client_id:
        raise OAuthError("invalid_grant", "the code was issued to another client")
    if form.get("redirect_uri") != code.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
    if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(
        _s256(verifier).encode(), code.challenge.encode()
    ):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
    return code


def _session_tokens(
    core: Core,
    *,
    user: str,
    client_id: str,
    scopes: tuple[str, ...],
    family: str,
    refresh_until: float | None,
) -> dict[str, Any]:
    """A login session's token response (RFC 6749 §5.1): an access token, and a
    rotating refresh token of the same family when ``refresh_until`` is given."""
    access, _ = issue.access_token(
        core,
        user=user,
        client_id=client_id,
        scopes=scopes,
        audience=[core.issuer],
        family=family,
        ttl=issue.ACCESS_TTL,
    )
    answer: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": issue.ACCESS_TTL,
        "scope": " ".join(scopes),
    }
    if refresh_until is not None:
        answer["refresh_token"] = issue.refresh_token(
            core,
            user=user,
            client_id=client_id,
            scopes=scopes,
            family=family,
            expires_at=refresh_until,
        )
    return answer


def _login_tokens(core: Core, code: Code) -> dict[str, Any]:
    offline = "offline_access" in code.scopes
    answer = _session_tokens(
        core,
        user=code.user,
        client_id=code.client_id,
        scopes=code.scopes,
        family=code.family,
        refresh_until=time.time() + issue.SESSION_TTL if offline else None,
    )
    answer["id_token"] = issue.id_token(
        core,
        client_id=code.client_id,
        subject=code.user,
        nonce=code.nonce,
        name=code.name,
        alg=code.id_token_alg,
    )
    return answer


def _refresh_grant(core: Core, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
    client = _client(core, authorization, form)
    db = for_core(core).db
    row = db.refresh_by_hash(digest(form.get("refresh_token") or ""))
    if row is None or row.client_id != client.client_id:
        raise OAuthError("invalid_grant", "unknown refresh token")
    if row.revoked_at is not None or row.expires_at <= time.time():
        raise OAuthError("invalid_grant", "the refresh token is revoked or expired")
    if not db.mark_rotated(row.jti):
        count = revoke_family(core, row.family, "rotated refresh token reused")
        audit_events.record(
            core, "oauth.refresh_reused", client_id=row.client_id, tokens_revoked=count
        )
        raise OAuthError(
            "invalid_grant", "the refresh token was already used; its family is revoked"
        )
    return _session_tokens(
        core,
        user=row.user,
        client_id=row.client_id,
        scopes=row.scopes,
        family=row.family,
        refresh_until=row.expires_at,
    )


def revoke(core: Core, form: dict[str, str]) -> None:
    """RFC 7009: revoke a refresh token (and its family) or an access token — an
    agent credential ends with everything exchanged from it, audited; always 200."""
    value = form.get("token") or ""
    db = for_core(core).db
    row = db.refresh_by_hash(digest(value))
    if row is not None:
        revoke_family(core, row.family, "revoked by the client (RFC 7009)")
        if row.client_id != clients.LOGIN_CLIENT:
            # An MCP client's refresh token stands for its grant (its family): §2.1 —
            # the access tokens of the same grant end with it.
            grants.revoke(core, "revoked by the client (RFC 7009)", grant_id=row.family)
        return
    claims = verify.inspect(value, keys=core.keys, store=core.store, issuer=core.issuer)
    if claims is None:
        return
    jti = str(claims["jti"])
    if db.token(jti) is not None:
        db.revoke_token(jti, "revoked by the client (RFC 7009)")
        credentials.end_descendants(core, jti, "revoked by the client (RFC 7009)")
        return
    credentials.end(core, jti, "revoked", "revoked at /revoke (RFC 7009)")


def revoke_family(core: Core, family: str, reason: str) -> int:
    """Revoke a login token family and end every agent credential exchanged from it."""
    db = for_core(core).db
    count = db.revoke_family(family, reason)
    for jti in db.family_access_jtis(family):
        credentials.end_descendants(core, jti, reason)
    return count
