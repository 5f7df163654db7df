"""The daemon as an OpenID Connect relying party of whichever issuer the user chose.

The embedded issuer and an external provider (Keycloak, Okta, Auth0, Entra ID,
Google, …) take the same road: discovery, the code redeemed with its PKCE
verifier, the ID token checked (signature from the JWKS, ``iss``, ``aud``,
``nonce``, ``exp``), refresh to confirm the user is still active.
"""

from __future__ import annotations

import json
from typing import Any

import jwt

from kontext.common import parsing

TIMEOUT = 10.0
ALGORITHMS = ["ES256", "RS256", "PS256", "ES384", "RS384", "EdDSA"]


class ProviderError(Exception):
    """The provider is unreachable or answered nonsense (not a refusal)."""


class ProviderRefused(Exception):
    """The provider refused (``invalid_grant`` and friends): the session is over."""


LOGIN_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


def discover(issuer: str, required: tuple[str, ...] = LOGIN_ENDPOINTS) -> dict[str, Any]:
    """OIDC Discovery: the issuer's metadata, with the endpoints ``required`` (a CI
    platform's issuer, which signs tokens but signs no one in, has only ``jwks_uri``)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    meta = _get_json(url)
    if meta.get("issuer") != issuer:  # OIDC Discovery §4.3: exactly the issuer asked for
        raise ProviderError(f"{url} names issuer {meta.get('issuer')!r}, not {issuer!r}")
    for key in required:
        if not isinstance(meta.get(key), str):
            raise ProviderError(f"the provider's metadata has no {key}")
    return meta


def _get_json(url: str) -> dict[str, Any]:
    import httpx  # here, not at start: it costs the idle daemon ~0.5 s and several MB

    try:
        answer = httpx.get(url, timeout=TIMEOUT, follow_redirects=False)
        value = parsing.json_loads(answer.content)
    except (httpx.HTTPError, json.JSONDecodeError, ValueError) as exc:
        raise ProviderError(f"cannot read {url}: {type(exc).__name__}") from exc
    if answer.status_code != 200 or not isinstance(value, dict):
        raise ProviderError(f"{url} answered HTTP {answer.status_code}")
    return value


def token_request(
    meta: dict[str, Any], form: dict[str, str], auth: tuple[str, str] | None
) -> dict[str, Any]:
    """POST to the token endpoint; a 4xx ``error`` is a refusal."""
    import httpx

    try:
        answer = httpx.post(
            meta["token_endpoint"], data=form, auth=auth, timeout=TIMEOUT, follow_redirects=False
        )
        value = parsing.json_loads(answer.content)
    except (httpx.HTTPError, json.JSONDecodeError, ValueError) as exc:
        raise ProviderError(f"the token endpoint failed: {type(exc).__name__}") from exc
    if not isinstance(value, dict):
        raise ProviderError("the token endpoint sent a malformed answer")
    if answer.status_code != 200:
        error = str(value.get("error", f"HTTP {answer.status_code}"))[:80]
        if 400 <= answer.status_code < 500:
            raise ProviderRefused(error)
        raise ProviderError(f"the token endpoint answered {error}")
    return value


def validate_id_token(
    meta: dict[str, Any], id_token: str, client_id: str, nonce: str | None
) -> dict[str, Any]:
    """OIDC Core §3.1.3.7: signature from the provider's JWKS, iss, aud, exp, nonce."""
    try:
        header = jwt.get_unverified_header(id_token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise ProviderError(f"ID token algorithm {alg!r} is not accepted")
        key = signing_key(meta, header)
        if key is None:
            raise ProviderError("the ID token's key is not in the provider's JWKS")
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key.key,
            algorithms=[alg],
            audience=client_id,
            issuer=meta["issuer"],
            leeway=60,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise ProviderError(f"the ID token is not valid: {exc}") from exc
    if nonce is not None and claims.get("nonce") != nonce:
        raise ProviderError("the ID token's nonce does not match this login")
    return claims


def signing_key(meta: dict[str, Any], header: dict[str, Any]) -> jwt.PyJWK | None:
    """The key of the provider's JWKS (``jwks_uri``, fetched now) that a token whose
    JOSE ``header`` this is names by ``kid`` (the first, when it names none); None if
    it is not there. Keys come only from the issuer's own JWKS, never from the
    token (``jku``, ``jwk``, ``x5u`` are not read)."""
    try:
        jwks = jwt.PyJWKSet.from_dict(_get_json(meta["jwks_uri"]))
    except jwt.PyJWKSetError as exc:
        raise ProviderError(f"the provider's JWKS has no usable key: {exc}") from exc
    keys = [k for k in jwks.keys if header.get("kid") in (None, k.key_id)]
    return keys[0] if keys else None


def userinfo(meta: dict[str, Any], access_token: str, subject: str) -> dict[str, Any]:
    """OIDC Core §5.3: the claims the provider keeps for UserInfo (with
    ``response_type=code`` it may put email and name only there, §5.4).

    The answer must name the ID token's ``sub`` (§5.3.4), or it is not this
    user's. A signed (``application/jwt``) answer is refused: ask the provider
    for plain JSON."""
    import httpx

    url = meta.get("userinfo_endpoint")
    if not isinstance(url, str) or not url.startswith(("https://", "http://127.0.0.1")):
        return {}
    try:
        answer = httpx.get(
            url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=TIMEOUT,
            follow_redirects=False,
        )
        value = parsing.json_loads(answer.content)  # depth-limited, as every provider read
    except (httpx.HTTPError, json.JSONDecodeError, ValueError) as exc:
        raise ProviderError(f"the UserInfo endpoint failed: {type(exc).__name__}") from exc
    if answer.status_code != 200 or not isinstance(value, dict):
        raise ProviderError(f"the UserInfo endpoint answered HTTP {answer.status_code}")
    if value.get("sub") != subject:
        raise ProviderError("the UserInfo answer is about another subject than the ID token")
    return value


def with_userinfo(
    meta: dict[str, Any], claims: dict[str, Any], access_token: Any
) -> dict[str, Any]:
    """The ID token's claims, completed from UserInfo when they lack the email or
    whether it was verified (never overriding what the ID token says)."""
    known = isinstance(claims.get("email"), str) and "email_verified" in claims
    if known or not isinstance(access_token, str):
        return claims
    extra = userinfo(meta, access_token, str(claims["sub"]))
    fields = ("email", "email_verified", "name")
    return {**claims, **{k: extra[k] for k in fields if k in extra and k not in claims}}


def user_of(claims: dict[str, Any], issuer: str) -> str:
    """``user:EMAIL`` when the provider says it verified the email, else ``user:ISS#SUB``.

    An email without ``email_verified: true`` (OIDC Core §5.1) is whatever the
    account's owner typed — some providers let anyone set it and omit the claim —
    so it names no one: org rules about users must not be met by typing an address.
    (Some providers send the string "true".)"""
    email = claims.get("email")
    if isinstance(email, str) and "@" in email and claims.get("email_verified") in (True, "true"):
        return f"user:{email}"
    return f"user:{issuer}#{claims['sub']}"
