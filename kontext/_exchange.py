"""``require``: the authority in, a fresh narrow credential out (RFC 8693 at ``/token``).

The request names the integration's gateway (``resource``, RFC 8707), and optionally
scopes, a target and a TTL (kontext's ``target`` and ``ttl`` parameters). The
daemon runs it through the whole request path — org policy, user consent
(target included), agent permissions and max TTL — and the delegation rules:
scopes and target only shrink, the lifetime never outgrows the authority's.
Without ``ttl`` the daemon's per-request default applies (60 s, at most the
agent's maximum and the authority's remaining life).

Arguments are checked here first, so a typo costs no round trip and no audit
event; the daemon checks them again (it trusts nothing it is sent).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kontext import _authority, _transport
from kontext._credential import Credential
from kontext._errors import (
    DELEGATION,
    LAYERS,
    Denied,
    InvalidRequest,
    NotConnected,
    Unavailable,
)
from kontext.common import validate

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
MAX_MESSAGE = 300

TTL = int | float | str | dt.timedelta
"""A lifetime: seconds (``60``), a duration (``"60s"``, ``"5m"``) or a ``timedelta``."""


@dataclass(frozen=True)
class Ask:
    """One validated request: integration, qualified scopes, target, TTL seconds."""

    integration: str
    scopes: tuple[str, ...]
    target: str | None
    ttl: int | None

    @classmethod
    def build(
        cls,
        integration: str,
        scopes: Iterable[str] | None,
        target: str | None,
        ttl: TTL | None,
    ) -> Ask:
        if not isinstance(integration, str) or not validate.INTEGRATION_NAME.fullmatch(integration):
            raise InvalidRequest(
                f"invalid integration {integration!r:.60}: use its name, e.g. 'github'"
            )
        return cls(integration, _scopes(integration, scopes), _target(target), _ttl(ttl))

    def form(self, authority: _authority.Authority) -> dict[str, str]:
        """The RFC 8693 §2.1 request body."""
        form = {
            "grant_type": GRANT_TYPE,
            "subject_token": authority.token,
            "subject_token_type": ACCESS_TYPE,
            "requested_token_type": ACCESS_TYPE,
            # RFC 8707: the token is for the integration's gateway, which the daemon
            # then also requires to be connected (else ``not_connected``).
            "resource": f"{authority.issuer}/gw/{self.integration}",
        }
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        if self.target is not None:
            form["target"] = self.target
        if self.ttl is not None:
            form["ttl"] = str(self.ttl)
        return form


def _scopes(integration: str, scopes: Iterable[str] | None) -> tuple[str, ...]:
    if scopes is None:
        return ()
    if isinstance(scopes, str):
        raise InvalidRequest("scopes must be a list of scopes, e.g. ['pulls:read']")
    out: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str):
            raise InvalidRequest(f"invalid scope {scope!r:.60}: scopes are strings")
        qualified = scope if scope.startswith(f"{integration}:") else f"{integration}:{scope}"
        try:
            validate.scope(qualified)
        except validate.InvalidInput as exc:
            raise InvalidRequest(str(exc)) from None
        out.append(qualified)
    if not out:
        raise InvalidRequest("scopes is empty: leave it out to ask for every scope held")
    return tuple(dict.fromkeys(out))


def _target(target: str | None) -> str | None:
    if target is None:
        return None
    if not isinstance(target, str):
        raise InvalidRequest("target must be a string such as 'acme/backend'")
    try:
        return validate.target(target)
    except validate.InvalidInput as exc:
        raise InvalidRequest(str(exc)) from None


def _ttl(ttl: TTL | None) -> int | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool):
        raise InvalidRequest("ttl must be seconds, a duration such as '60s', or a timedelta")
    if isinstance(ttl, str):
        try:
            return validate.duration(ttl)
        except validate.InvalidInput as exc:
            raise InvalidRequest(f"ttl: {exc}") from None
    if isinstance(ttl, dt.timedelta):
        seconds: float = ttl.total_seconds()
    elif isinstance(ttl, int | float):
        seconds = float(ttl)
    else:
        raise InvalidRequest("ttl must be seconds, a duration such as '60s', or a timedelta")
    if not math.isfinite(seconds) or not validate.MIN_TTL <= seconds <= validate.MAX_TTL:
        raise InvalidRequest(f"ttl must be between {validate.MIN_TTL}s and {validate.MAX_TTL}s")
    return int(seconds)


def require(
    integration: str,
    *,
    scopes: Iterable[str] | None = None,
    target: str | None = None,
    ttl: TTL | None = None,
    token: str | None = None,
) -> Credential:
    """A new credential for ``integration``, narrowed from this process's authority.

    Args:
        integration: the integration to call, e.g. ``"github"``.
        scopes: the scopes to carry (``"pulls:read"`` or ``"github:pulls:read"``);
            default: every scope of the integration the authority holds.
        target: limit it to one resource (``"acme/backend"``); an authority with
            a target keeps its own.
        ttl: its lifetime — seconds, ``"60s"``/``"5m"`` or a ``timedelta``;
            default 60 s. Never more than the authority has left.
        token: the authority to exchange; default: this process's
            ``KONTEXT_TOKEN`` (set by ``kontext exec``).

    Returns:
        A ``Credential``; use it as a context manager to revoke it at block end.

    Raises:
        Denied: a layer of the request path or the delegation rules refused.
        NotConnected: the integration has no upstream connection.
        Unavailable: no authority, or no daemon answering.
        InvalidRequest: an argument is malformed.
    """
    return exchange(Ask.build(integration, scopes, target, ttl), _authority.resolve(token))


async def arequire(
    integration: str,
    *,
    scopes: Iterable[str] | None = None,
    target: str | None = None,
    ttl: TTL | None = None,
    token: str | None = None,
) -> Credential:
    """``require`` for asyncio: same arguments, same credential, same errors."""
    return await aexchange(Ask.build(integration, scopes, target, ttl), _authority.resolve(token))


def exchange(ask: Ask, authority: _authority.Authority) -> Credential:
    """One RFC 8693 exchange at the authority's issuer."""
    answer = _transport.post_form(authority.issuer, "/token", ask.form(authority))
    return outcome(answer, ask, authority)


async def aexchange(ask: Ask, authority: _authority.Authority) -> Credential:
    """``exchange`` for asyncio."""
    answer = await _transport.apost_form(authority.issuer, "/token", ask.form(authority))
    return outcome(answer, ask, authority)


def outcome(answer: _transport.Reply, ask: Ask, authority: _authority.Authority) -> Credential:
    """The daemon's answer as a ``Credential``, or the matching exception."""
    body = answer.json()
    if answer.status == 200 and isinstance(body.get("access_token"), str):
        return _credential(body, ask, authority)
    raise _error(answer, body, ask, authority)


def _credential(body: dict[str, Any], ask: Ask, authority: _authority.Authority) -> Credential:
    token = body["access_token"]
    claims = _authority.claims_of(token)
    act = claims.get("act")
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        exp = time.time() + float(body.get("expires_in") or 0)
    scope = body.get("scope") or claims.get("scope") or ""
    return Credential(
        token=token,
        issuer=authority.issuer,
        integration=ask.integration,
        jti=str(claims.get("jti", "")),
        scopes=tuple(str(scope).split()),
        target=claims.get("target") if isinstance(claims.get("target"), str) else None,
        expires_at=float(exp),
        agent=act.get("sub") if isinstance(act, dict) else None,
        parent=authority.jti,
    )


def _one_line(text: object) -> str:
    """A daemon's description, made safe to print: one line, printable, bounded."""
    clean = "".join(c if c.isprintable() else " " for c in str(text))
    return clean if len(clean) <= MAX_MESSAGE else clean[: MAX_MESSAGE - 3] + "..."


def _error(
    answer: _transport.Reply, body: dict[str, Any], ask: Ask, authority: _authority.Authority
) -> Exception:
    code = body.get("error")
    described = _one_line(body.get("error_description") or "")
    layer = body.get("denied_by")
    if isinstance(layer, str) and layer in LAYERS:
        reason = described.partition(": ")[2] or described
        return Denied(described, layer=layer, reason=reason)
    if body.get("not_connected") == ask.integration:
        return NotConnected(described, integration=ask.integration)
    if code in ("invalid_scope", "invalid_target"):
        return Denied(f"denied by delegation: {described}", layer=DELEGATION, reason=described)
    if code == "invalid_grant":
        reason = f"{authority.source} is no longer active (revoked or expired, or its exec ended)"
        return Denied(f"denied by delegation: {reason}", layer=DELEGATION, reason=reason)
    if isinstance(code, str) and code != "temporarily_unavailable" and answer.status < 500:
        return InvalidRequest(described or code)
    return _unavailable(answer, body, described)


def _unavailable(answer: _transport.Reply, body: dict[str, Any], described: str) -> Unavailable:
    if answer.status == 429:
        wait = answer.headers.get("retry-after", "a few")
        return Unavailable(f"kontextd is throttling requests: retry in {_one_line(wait)} s")
    nested = body.get("error")
    if isinstance(nested, dict):  # the control API's shape: Host/Origin refusals
        described = _one_line(nested.get("message", ""))
    why = described or f"HTTP {answer.status}"
    return Unavailable(f"kontextd could not issue a credential now: {why}")
