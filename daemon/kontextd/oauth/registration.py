"""``POST /register``: RFC 7591 dynamic client registration, for public MCP clients.

Registration is open — to any program on this computer, as MCP clients expect —
because it grants nothing: a registered client can only *ask*, on the consent
page, which answers only this OS user's browser. So what a client says about
itself is kept as it said it and shown as unverified.

What is accepted (anything else is ``invalid_client_metadata`` or
``invalid_redirect_uri``, RFC 7591 §3.2.2):

- ``redirect_uris``: 1 to 10 loopback or private-use-scheme URIs (RFC 8252;
  ``kontextd.oauth.public_clients``);
- ``token_endpoint_auth_method``: registered as ``none`` whatever was asked —
  kontext issues no client secrets (§3.2.1 lets the server replace a value; the
  client sees the one it got);
- ``grant_types``: ``authorization_code`` and optionally ``refresh_token``;
  ``response_types``: ``code``;
- ``client_name`` (at most 100 printable characters), ``client_uri``,
  ``software_id``: kept and shown, never trusted.

The body must be ``application/json`` (a cross-site form cannot send that
without a preflight). A caller refused ``throttle.LIMIT`` times within
``throttle.WINDOW`` seconds waits. Registrations never approved are forgotten
after a day, and at most ``MAX_CLIENTS`` are kept: past that the oldest never
approved makes room (a flood evicts only registrations nobody approved).
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from typing import Any

from kontext.common import parsing
from kontextd.core import Core
from kontextd.oauth import events
from kontextd.oauth.clients import OAuthError
from kontextd.oauth.public_clients import (
    MAX_REDIRECTS,
    MAX_URI,
    REGISTERED_PREFIX,
    check_redirect_uri,
    enabled,
    off_message,
)
from kontextd.store.clients_sql import ClientRow, ClientStore

MAX_CLIENTS = 1000
UNUSED_FOR = 86400.0
MAX_NAME = 100
DEFAULT_NAME = "Unnamed application"
GRANT_TYPES = ("authorization_code", "refresh_token")


def register(core: Core, body: bytes, content_type: str | None, uid: int | None) -> dict[str, Any]:
    """Validate and store one registration; the RFC 7591 §3.2.1 answer. Every
    refusal is audited (``oauth.client_refused``, the caller's uid)."""
    try:
        row = _checked(core, body, content_type, uid)
        _make_room(core)
    except OAuthError as exc:
        _refused(core, exc.description, uid)
        raise
    ClientStore(core.store).insert(row)
    events.record(
        core,
        "oauth.client_registered",
        client_id=row.client_id,
        client_name=row.name,
        redirect_uris=list(row.redirect_uris),
        peer_uid=uid,
    )
    return _answer(row)


def _checked(core: Core, body: bytes, content_type: str | None, uid: int | None) -> ClientRow:
    if not enabled(core):
        raise OAuthError("access_denied", off_message(core), 403)
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise OAuthError("invalid_client_metadata", "send the client metadata as application/json")
    try:  # depth-limited: 5,000 nested arrays were a 500 and a traceback (issue 17 item 19)
        meta = parsing.json_loads(body)
    except parsing.TooDeep as exc:
        raise OAuthError("invalid_client_metadata", f"the body is {exc}") from exc
    except ValueError as exc:  # bad JSON, or not UTF-8
        raise OAuthError("invalid_client_metadata", "the body is not JSON") from exc
    if not isinstance(meta, dict):
        raise OAuthError("invalid_client_metadata", "the body must be a JSON object")
    return _row(meta, uid)


def _make_room(core: Core) -> None:
    store = ClientStore(core.store)
    store.purge_unused(time.time() - UNUSED_FOR)
    if store.count() >= MAX_CLIENTS and not store.evict_oldest_unused():
        raise OAuthError(
            "temporarily_unavailable", f"{MAX_CLIENTS} approved clients are registered", 503
        )


def _row(meta: dict[str, Any], uid: int | None) -> ClientRow:
    return ClientRow(
        client_id=REGISTERED_PREFIX + secrets.token_urlsafe(16),
        name=_name(meta.get("client_name")),
        redirect_uris=_redirect_uris(meta.get("redirect_uris")),
        grant_types=_grant_types(meta.get("grant_types"), meta.get("response_types")),
        client_uri=_optional_url(meta.get("client_uri"), "client_uri"),
        software_id=_optional_text(meta.get("software_id"), "software_id"),
        registered_by=uid,
        created_at=time.time(),
    )


def _redirect_uris(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_REDIRECTS:
        raise OAuthError(
            "invalid_redirect_uri", f"redirect_uris must list 1 to {MAX_REDIRECTS} URIs"
        )
    try:
        return tuple(dict.fromkeys(check_redirect_uri(uri) for uri in raw))
    except ValueError as exc:
        raise OAuthError("invalid_redirect_uri", str(exc)) from exc


def _grant_types(raw: Any, response_types: Any) -> tuple[str, ...]:
    grants = ["authorization_code"] if raw is None else raw
    if (
        not isinstance(grants, list)
        or "authorization_code" not in grants
        or not set(grants) <= set(GRANT_TYPES)
    ):
        raise OAuthError(
            "invalid_client_metadata",
            "grant_types must be authorization_code, optionally with refresh_token",
        )
    if response_types is not None and response_types != ["code"]:
        raise OAuthError("invalid_client_metadata", 'response_types must be ["code"]')
    return tuple(g for g in GRANT_TYPES if g in grants)


def _name(raw: Any) -> str:
    if raw is None:
        return DEFAULT_NAME
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_NAME or not raw.isprintable():
        raise OAuthError(
            "invalid_client_metadata", f"client_name must be 1 to {MAX_NAME} printable characters"
        )
    return raw.strip()


def _optional_url(raw: Any, name: str) -> str | None:
    if raw is None or raw == "":
        return None
    parts = urllib.parse.urlsplit(raw) if isinstance(raw, str) else None
    if parts is None or parts.scheme not in ("http", "https") or len(raw) > MAX_URI:
        raise OAuthError("invalid_client_metadata", f"{name} must be an http(s) URL")
    return str(raw)


def _optional_text(raw: Any, name: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > MAX_NAME or not raw.isprintable():
        raise OAuthError("invalid_client_metadata", f"{name} must be at most {MAX_NAME} characters")
    return raw


def _answer(row: ClientRow) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "client_id": row.client_id,
        "client_id_issued_at": int(row.created_at),
        "client_name": row.name,
        "redirect_uris": list(row.redirect_uris),
        "grant_types": list(row.grant_types),
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    if row.client_uri is not None:
        answer["client_uri"] = row.client_uri
    if row.software_id is not None:
        answer["software_id"] = row.software_id
    return answer


def _refused(core: Core, reason: str, uid: int | None) -> None:
    events.record(core, "oauth.client_refused", endpoint="/register", reason=reason, peer_uid=uid)
