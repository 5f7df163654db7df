"""``/token``: authorization_code, refresh_token and token exchange (RFC 8693).

- Codes are single use, live 60 s and are bound to client, redirect and PKCE
  challenge; a replayed code revokes everything it issued (RFC 6749 §4.1.2).
- Refresh tokens rotate; presenting a rotated one revokes its whole family
  (OAuth 2.0 Security BCP §4.14.2).
- Token exchange turns a token into a narrower, delegated one: scopes only
  shrink, lifetime never exceeds the subject's, ``act`` names the actor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from kontextd.core import Core
from kontextd.oauth import clients, issue
from kontextd.oauth import events as audit_events
from kontextd.oauth.clients import OAuthError
from kontextd.oauth.state import digest, for_core
from kontextd.tokens import verify

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def handle(core: Core, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
    grant = form.get("grant_type")
    if grant == "authorization_code":
        return _code_grant(core, authorization, form)
    if grant == "refresh_token":
        return _refresh_grant(core, authorization, form)
    if grant == EXCHANGE:
        return _exchange(core, authorization, form)
    raise OAuthError("unsupported_grant_type", "unsupported grant_type")


def _client(core: Core, authorization: str | None, form: dict[str, str]) -> clients.Client:
    return clients.authenticate(core, for_core(core).secret, authorization, form)


def _s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def _code_grant(core: Core, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
    client = _client(core, authorization, form)
    state = for_core(core)
    code = state.take_code(form.get("code") or "")
    if code is None or code.expires_at <= time.time():
        raise OAuthError("invalid_grant", "the code is unknown or expired")
    if code.used:
        revoked = state.db.revoke_family(code.family, "authorization code replayed")
        ended = state.db.revoke_grants("authorization code replayed", grant_id=code.family)
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
    if client.client_id != code.client_id:
        raise OAuthError("invalid_grant", "the code was issued to another client")
    if form.get("redirect_uri") != code.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
    if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(
        _s256(verifier).encode(), code.challenge.encode()
    ):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
    if client.is_login:
        return _login_tokens(core, code)
    from kontextd.consent import grants

    return grants.from_code(core, code)


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


def _login_tokens(core: Core, code: Any) -> dict[str, Any]:
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
        count = db.revoke_family(row.family, "rotated refresh token reused")
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


def _exchange(core: Core, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
    """RFC 8693 §2: the subject token in, a narrower delegated token out."""
    if form.get("subject_token_type") != ACCESS_TYPE:
        raise OAuthError("invalid_request", "subject_token_type must be an access token")
    # The signature check is cached per token (an agent exchanges the same subject
    # token again and again); expiry and revocation are checked every time.
    claims = verify.inspect_cached(core, form.get("subject_token") or "")
    if claims is None:
        raise OAuthError("invalid_grant", "the subject token is not active")
    held = tuple(str(claims.get("scope", "")).split())
    act = claims.get("act")
    if act is None:
        # The user's own token: the acting agent must authenticate, and gets at
        # most what the user approved for it.
        client = _client(core, authorization, form)
        if client.agent is None:
            raise OAuthError("invalid_client", "an agent client must act on the user's token")
        from kontextd.consent import grants

        held = grants.approved_scopes(core, str(claims["sub"]), client.agent.name)
        act = {"sub": client.client_id}
    asked = tuple(dict.fromkeys((form.get("scope") or " ".join(held)).split()))
    extra = [s for s in asked if s not in held]
    if extra or not asked:
        raise OAuthError("invalid_scope", f"scopes can only shrink: not held {' '.join(extra)}")
    audience = sorted({s.partition(":")[0] for s in asked})
    resource = form.get("resource") or form.get("audience")
    if resource is not None:
        if resource not in audience:
            raise OAuthError("invalid_target", "resource must be the integration of the scopes")
        audience = [resource]
    ttl = int(claims["exp"]) - int(time.time())
    if ttl <= 0:
        raise OAuthError("invalid_grant", "the subject token has expired")
    token, _ = issue.access_token(
        core,
        user=str(claims["sub"]),
        client_id=str(act.get("sub")) if isinstance(act, dict) else "kontext",
        scopes=asked,
        audience=audience,
        family=str(claims["jti"]),
        ttl=min(ttl, issue.ACCESS_TTL),
        act=act if isinstance(act, dict) else None,
        target=claims.get("target"),
        parent=str(claims["jti"]),
    )
    return {
        "access_token": token,
        "issued_token_type": ACCESS_TYPE,
        "token_type": "Bearer",
        "expires_in": min(ttl, issue.ACCESS_TTL),
        "scope": " ".join(asked),
    }


def revoke(core: Core, form: dict[str, str]) -> None:
    """RFC 7009: revoke a refresh token (and its family) or an access token; always 200."""
    value = form.get("token") or ""
    db = for_core(core).db
    row = db.refresh_by_hash(digest(value))
    if row is not None:
        db.revoke_family(row.family, "revoked by the client (RFC 7009)")
        return
    claims = verify.inspect(value, keys=core.keys, store=core.store, issuer=core.issuer)
    if claims is None:
        return
    jti = str(claims["jti"])
    if db.token(jti) is not None:
        db.revoke_token(jti, "revoked by the client (RFC 7009)")
        return
    from kontextd import credentials

    credentials.end(core, jti, "revoked", "revoked at /revoke (RFC 7009)")
