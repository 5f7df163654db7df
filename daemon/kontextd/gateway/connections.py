"""Upstream credentials: stored in the SecretStore, never in the database or logs.

One secret per integration, ``integration-NAME``, holding JSON: ``{"kind":
"api_key", "secret": ...}`` or ``{"kind": "oauth", "refresh_token": ...}``, plus
when it was connected. For OAuth the daemon refreshes and caches the provider's
short-lived access token in memory; a refresh the provider refuses ends the
connection, audited, with a message saying how to connect again.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from kontext.common import parsing, wire
from kontext.common.integrations import Integration
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.gateway import binding
from kontextd.gateway.state import AccessToken

log = logging.getLogger("kontextd.gateway")
REFRESH_MARGIN = 30.0  # refresh this long before the provider's expiry: a call takes time
MAX_SECRET = 4096
TOKEN_TIMEOUT = 15.0


class NotConnected(ApiError):
    """The integration has no upstream credential (never connected, or its connection ended)."""

    def __init__(self, name: str, why: str = "is not connected") -> None:
        self.name = name
        super().__init__(wire.UPSTREAM, f"{name} {why}: run 'kontext integration connect {name}'")


def secret_name(name: str) -> str:
    return f"integration-{name}"


def header_safe(value: Any) -> bool:
    """Visible ASCII only: a secret goes into an HTTP header (no CR/LF injection)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_SECRET
        and value.isascii()
        and value.isprintable()  # ASCII 32-126 ...
        and " " not in value  # ... without the space: 33-126
    )


def stored(core: Core, name: str) -> dict[str, Any] | None:
    """The connection record, read once from the SecretStore and then kept in memory:
    a Secret Service round trip (D-Bus, a thread for the timeout) on every gateway
    call would cost more than the gateway itself. Every change goes through ``_put``."""
    with core.gateway.lock:
        if name in core.gateway.records:
            return core.gateway.records[name]
    raw = core.secrets.get(secret_name(name))
    value = None
    try:
        value = parsing.json_loads(raw) if raw is not None else None
    except ValueError:  # not JSON, or nested absurdly deep (parsing.TooDeep)
        log.warning("the stored secret for %s is unreadable; treating it as not connected", name)
    record = value if isinstance(value, dict) else None
    with core.gateway.lock:
        core.gateway.records[name] = record
    return record


def _put(core: Core, name: str, record: dict[str, Any] | None) -> None:
    """Write (or with None, delete) the connection record, and the in-memory copy."""
    if record is None:
        core.secrets.delete(secret_name(name))
    else:
        core.secrets.put(secret_name(name), json.dumps(record))
    with core.gateway.lock:
        core.gateway.records[name] = record


def save(core: Core, integration: Integration, record: dict[str, Any], method: str) -> None:
    """Store a new connection (replacing any old one), bound to the integration's
    origins as configured now (``binding``), and audit it — without the secret."""
    name = integration.name
    bound = binding.bound(integration)
    _put(core, name, {**record, "connected_at": time.time(), "bound": bound})
    with core.gateway.lock:
        core.gateway.access.pop(name, None)
    with core.store.transaction() as tx:
        tx.append_event(
            {
                "event": "integration.connected",
                "integration": name,
                "method": method,
                "upstream": bound["base_url"],
                "user": core.user_ref(),
            }
        )


def moved(core: Core, integration: Integration, which: str = "base_url") -> str | None:
    """Why this integration's stored secret may not be sent to its ``which`` URL now,
    or None (also None when nothing is stored: then the call is refused as not connected)."""
    record = stored(core, integration.name)
    return binding.changed(integration, record, which) if record is not None else None


def disconnect(core: Core, name: str, reason: str) -> bool:
    """Forget the upstream credential; returns whether there was one."""
    had = stored(core, name) is not None
    _put(core, name, None)
    with core.gateway.lock:
        core.gateway.access.pop(name, None)
    if had:
        with core.store.transaction() as tx:
            tx.append_event(
                {
                    "event": "integration.disconnected",
                    "integration": name,
                    "reason": reason,
                    "user": core.user_ref(),
                }
            )
    return had


def upstream_secret(core: Core, integration: Integration) -> str:
    """What the gateway injects: the API key, or a fresh provider access token."""
    record = stored(core, integration.name)
    if record is None:
        raise NotConnected(integration.name)
    why = binding.changed(integration, record, "base_url")
    if why is not None:
        raise NotConnected(integration.name, why)
    if record.get("kind") == "api_key" and header_safe(record.get("secret")):
        return str(record["secret"])
    if record.get("kind") == "oauth":
        return access_token(core, integration, record).value
    raise NotConnected(integration.name, "has an unusable stored credential")


def ready_secret(core: Core, integration: Integration) -> str | None:
    """The upstream secret if it is in memory and fresh — no keyring, no provider call;
    None means ask ``upstream_secret`` off the event loop. Never waits for the lock
    (a refresh on another thread holds it)."""
    if not core.gateway.lock.acquire(blocking=False):
        return None
    try:
        record = core.gateway.records.get(integration.name)
        if record is None:
            return None
        if record.get("kind") == "api_key" and header_safe(record.get("secret")):
            return str(record["secret"])
        cached = core.gateway.access.get(integration.name)
        fresh = cached is not None and (
            cached.expires_at is None or cached.expires_at - REFRESH_MARGIN > time.time()
        )
        return cached.value if fresh and cached is not None else None
    finally:
        core.gateway.lock.release()


def access_token(core: Core, integration: Integration, record: dict[str, Any]) -> AccessToken:
    """The cached provider access token, refreshed when it is about to expire."""
    with core.gateway.lock:
        cached = core.gateway.access.get(integration.name)
        if cached is not None and (
            cached.expires_at is None or cached.expires_at - REFRESH_MARGIN > time.time()
        ):
            return cached
        fresh = refresh(core, integration, record)
        core.gateway.access[integration.name] = fresh
        return fresh


def refresh(core: Core, integration: Integration, record: dict[str, Any]) -> AccessToken:
    """RFC 6749 §6: trade the refresh token for a new access token (and maybe a new refresh)."""
    from kontextd.gateway import provider_oauth

    name = integration.name
    why = binding.changed(integration, record, "token_url")
    if why is not None:  # the refresh token goes only where it came from
        raise NotConnected(name, why)
    refresh_token = record.get("refresh_token")
    if not header_safe(refresh_token) or integration.oauth is None:
        disconnect(core, name, "no refresh token: the provider's access token expired")
        raise NotConnected(name, "is no longer connected (its access token expired)")
    form = {"grant_type": "refresh_token", "refresh_token": str(refresh_token)}
    answer = provider_oauth.token_request(core, integration, form)
    if answer.get("error"):
        error = str(answer["error"])[:60]
        disconnect(core, name, f"the provider refused to refresh the connection ({error})")
        raise NotConnected(
            name, f"is no longer connected: the provider refused to refresh it ({error})"
        )
    token = provider_oauth.access_from(name, answer)
    if header_safe(answer.get("refresh_token")) and answer["refresh_token"] != refresh_token:
        # Rotated (RFC 6749 §10.4): the old one is now dead, keep the new one.
        _put(core, name, {**record, "refresh_token": answer["refresh_token"]})
    with core.store.transaction() as tx:
        tx.append_event({"event": "integration.refreshed", "integration": name})
    return token


def listing(core: Core) -> list[dict[str, Any]]:
    """Every integration, connected or not — never the secret."""
    rows = []
    for integ in sorted(core.config.integrations.values(), key=lambda i: i.name):
        record = stored(core, integ.name)
        rows.append(
            {
                "name": integ.name,
                "display_name": integ.display_name,
                "connected": record is not None,
                "method": record.get("kind") if record else None,
                "connected_at": record.get("connected_at") if record else None,
                "connected_for": (record.get("bound") or {}).get("base_url") if record else None,
                "moved": binding.changed(integ, record, "base_url") if record else None,
                "delivery": integ.mode,
                "base_url": integ.base_url,
                "oauth_ready": bool(integ.oauth and integ.oauth.client_id),
                # The catalogue, as the gateway reads it: METHOD /path -> scope on target.
                "routes": [
                    {
                        "route": rule.text,
                        "scope": f"{integ.name}:{rule.scope}",
                        "target": rule.target,
                    }
                    for rule in integ.routes
                ],
                "env": list(integ.env),
                "scopes": dict(integ.scopes),
            }
        )
    return rows
