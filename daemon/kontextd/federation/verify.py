"""Verify a CI platform's OIDC token, naming the first check that fails.

The order is the cheapest and least trusting first: the token's shape, its
algorithm (pinned per platform: ``none`` and HS256 never get near a key), its
issuer (only one kontext believes — ``[ci.issuers]`` or built in — and nothing is
fetched from any other), then OIDC discovery and the issuer's JWKS (the key is
looked up by ``kid`` in that set only), the signature, ``iss``, ``aud`` (the
audience kontext asked for), ``exp``, ``nbf`` and ``iat`` (RFC 7519 §4.1), and
last the platform's own claims (``platforms``). Verification is PyJWT's, as for
``kontext login --issuer`` (``kontextd.oauth.relying``), sharing its discovery
and JWKS code.

No part of the token is logged or kept; a refused token's identifying claims go
to the audit marked as claimed, never as facts.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import jwt

from kontext.common import parsing, wire
from kontext.common.ci_config import CISettings
from kontextd.errors import ApiError
from kontextd.federation import platforms
from kontextd.federation.refusal import (
    ALG,
    AUD,
    EXP,
    FORMAT,
    IAT,
    ISS,
    ISSUER,
    NBF,
    SIGNATURE,
    Refused,
)
from kontextd.oauth import relying

MAX_TOKEN = 16 * 1024
# exp is held to the second (a token replayed after expiry is refused), with only a
# few seconds for clocks that disagree; nbf and iat get a minute, as a runner's
# clock may lag the platform's (GitHub back-dates nbf for the same reason).
EXP_LEEWAY = 5
NBF_LEEWAY = 60
REQUIRED = ["iss", "sub", "aud", "exp", "iat"]


@dataclass(frozen=True)
class Verified:
    """A token that passed every check: its issuer's platform, claims and workload.
    ``repr`` names the workload only; the token itself is never kept."""

    platform: str
    claims: dict[str, Any]
    workload: platforms.Workload
    replay_key: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Verified({self.workload.user!r})"


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload, read without any check — only to say what a refused token claimed
    and to find its issuer before anything is believed."""
    try:
        payload = token.split(".")[1]
        value = parsing.json_loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):  # parsing.TooDeep and UnicodeDecodeError are ValueErrors
        return {}
    return value if isinstance(value, dict) else {}


def _header(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN or token.count(".") != 2:
        raise Refused(FORMAT, "this is not a signed JWT (three base64url parts)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Refused(FORMAT, f"the token's header cannot be read ({exc})") from exc
    if "crit" in header:  # RFC 7515 §4.1.11: extensions we do not understand
        raise Refused(FORMAT, "the token's header has crit extensions kontext does not know")
    return header


def _issuer(settings: CISettings, platform: str, claims: dict[str, Any]) -> str:
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise Refused(ISS, "the token has no iss claim")
    believed = settings.platform_of(issuer)
    if believed is None:
        raise Refused(
            ISSUER,
            f"{issuer[:120]!r} is not an issuer kontext trusts; name it in config.toml "
            f'[ci.issuers] ("URL" = "{platform}") if it should be',
        )
    if believed != platform:
        raise Refused(ISSUER, f"{issuer} mints {believed} tokens, not {platform} ones")
    return issuer


def _key(issuer: str, header: dict[str, Any]) -> Any:
    try:
        meta = relying.discover(issuer, required=("jwks_uri",))
        key = relying.signing_key(meta, header)
    except relying.ProviderError as exc:
        raise ApiError(wire.UPSTREAM, f"cannot read the issuer {issuer}'s keys: {exc}") from exc
    if key is None:
        raise Refused(SIGNATURE, f"the token's key {header.get('kid')!r} is not in {issuer}'s JWKS")
    return key.key


def _decode(token: str, key: Any, alg: str, issuer: str, audience: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=NBF_LEEWAY,
            options={"require": REQUIRED, "verify_exp": False},
        )
    except jwt.InvalidSignatureError as exc:
        why = f"the token's signature does not verify with {issuer}'s key"
        raise Refused(SIGNATURE, why) from exc
    except jwt.InvalidAudienceError as exc:
        why = f"the token is not for audience {audience!r}; request it for that audience"
        raise Refused(AUD, why) from exc
    except jwt.InvalidIssuerError as exc:
        raise Refused(ISS, f"the token's iss is not {issuer}") from exc
    except jwt.ImmatureSignatureError as exc:
        check = NBF if "nbf" in str(exc) or "before" in str(exc) else IAT
        raise Refused(check, f"the token is not valid yet ({exc})") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise Refused(FORMAT, f"the token has no {exc.claim} claim") from exc
    except jwt.PyJWTError as exc:
        raise Refused(SIGNATURE, f"the token does not verify ({exc})") from exc
    return claims


def _expiry(claims: dict[str, Any], now: float) -> float:
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise Refused(EXP, "the token's exp is not a time")
    if exp + EXP_LEEWAY <= now:
        raise Refused(EXP, f"the token expired {int(now - exp)}s ago; request a new one")
    return float(exp)


def verify(
    settings: CISettings, platform: str, token: str, expected_issuer: str | None = None
) -> Verified:
    """Every check of the module docstring, in order; raises ``Refused`` naming the first
    that fails (``ApiError`` 'upstream' when the issuer's keys cannot be read).
    ``expected_issuer``: the issuer the caller named (``--issuer``), if any."""
    header = _header(token)
    alg = header.get("alg")
    pinned = platforms.ALGORITHMS[platform]
    if alg not in pinned:
        why = f"algorithm {alg!r:.20} is not accepted: {platform} tokens are {'/'.join(pinned)}"
        raise Refused(ALG, why)
    issuer = _issuer(settings, platform, unverified_claims(token))
    if expected_issuer is not None and issuer != expected_issuer:
        raise Refused(ISS, f"the token was issued by {issuer}, not {expected_issuer}")
    claims = _decode(token, _key(issuer, header), str(alg), issuer, settings.audience)
    expires_at = _expiry(claims, time.time())
    workload = platforms.workload(platform, issuer, claims)
    jti = claims.get("jti")
    # Single use is kept by jti; a token without one by its hash (never the token).
    seen = jti if isinstance(jti, str) and jti else hashlib.sha256(token.encode()).hexdigest()
    key = f"{issuer}#{seen}"
    return Verified(platform, claims, workload, key, expires_at)
