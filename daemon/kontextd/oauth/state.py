"""The authorization server's short-lived state: pushed requests and codes, in memory.

Pushed requests live 5 minutes and are used once; codes live 60 seconds and are
used once (RFC 6749 §4.1.2). A used code is remembered until its expiry so a
replay can be recognised and what it issued revoked (§4.1.2, §10.5).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kontextd.core import Core
from kontextd.oauth import clients
from kontextd.store.oauth_sql import OAuthStore
from kontextd.tokens.jwk import ES256

REQUEST_TTL = 300
CODE_TTL = 60
# Front-channel requests are made by GET /authorize (an MCP client's): a page that
# loads it over and over only evicts its own oldest requests past this many.
MAX_PENDING = 256
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Pending:
    """One pushed authorization request (RFC 9126), waiting for the user's decision."""

    request_uri: str
    client_id: str
    redirect_uri: str
    state: str | None
    nonce: str | None
    challenge: str
    scopes: tuple[str, ...]
    target: str | None
    duration: int
    csrf: str
    expires_at: float
    id_token_alg: str = ES256
    used: bool = False
    # A public client's (an MCP client's) front-channel request: the name it gave, the
    # RFC 8707 resource its token is for, whether it may have a refresh token.
    client_name: str | None = None
    resource: str | None = None
    refresh: bool = False

    def __repr__(self) -> str:
        return f"Pending(client_id={self.client_id!r}, <redacted>)"

    @property
    def public(self) -> bool:
        """A public client's request (not pushed with the CLI's secret)."""
        return self.client_name is not None


@dataclass
class Code:
    """An issued authorization code; the dict key is its hash, never the code."""

    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    scopes: tuple[str, ...]
    target: str | None
    duration: int
    user: str
    name: str | None
    expires_at: float
    id_token_alg: str = ES256
    family: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    used: bool = False
    # A public client's code: the agent the user chose for it, the client's name, the
    # RFC 8707 resource, and whether a refresh token comes with the access token.
    agent: str | None = None
    client_name: str | None = None
    resource: str | None = None
    refresh: bool = False
    # The session the user approved in (``consent.layer.session_id``): a grant is of
    # that session only, so a code redeemed after it ended makes none.
    session: str | None = None

    def __repr__(self) -> str:
        return f"Code(client_id={self.client_id!r}, <redacted>)"


class AuthState:
    """Per-daemon state of the embedded issuer."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.secret = clients.create_secret(core.paths.runtime)
        self.db = OAuthStore(core.store)
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}
        self._codes: dict[str, Code] = {}

    def push(self, **fields: Any) -> Pending:
        uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(24)
        pending = Pending(
            request_uri=uri,
            csrf=secrets.token_urlsafe(24),
            expires_at=time.time() + REQUEST_TTL,
            **fields,
        )
        with self._lock:
            expired = self._sweep()
            evicted = []
            while len(self._pending) >= MAX_PENDING:  # the oldest go (insertion order)
                evicted.append(self._pending.pop(next(iter(self._pending))))
            self._pending[uri] = pending
        self._unanswered(expired)
        self._unanswered(evicted, f"pushed out by newer requests (at most {MAX_PENDING} open)")
        return pending

    def sweep(self) -> None:
        """Forget expired requests and codes; audit public requests nobody answered
        and public codes nobody redeemed (the reaper calls this, so a consent page
        left open, or an approval its client never collected, is recorded soon after)."""
        with self._lock:
            expired = self._sweep()
            unredeemed = self._sweep_codes()
        self._unanswered(expired)
        for code in unredeemed:
            self._expired(
                code.client_id,
                code.client_name,
                code.scopes,
                code.resource,
                f"approved for agent:{code.agent}, but the client did not redeem its code "
                f"within {CODE_TTL} s: no grant was made",
            )

    def _unanswered(self, expired: list[Pending], reason: str | None = None) -> None:
        for pending in expired:
            if pending.public and not pending.used:
                self._expired(
                    pending.client_id,
                    pending.client_name,
                    pending.scopes,
                    pending.resource,
                    reason or f"the consent page was not answered within {REQUEST_TTL} s",
                )

    def _expired(
        self,
        client_id: str,
        client_name: str | None,
        scopes: tuple[str, ...],
        resource: str | None,
        reason: str,
    ) -> None:
        with self.core.store.transaction() as tx:
            tx.append_event(
                {
                    "event": "consent.expired",
                    "user": self.core.user_ref(),
                    "client_id": client_id,
                    "client_name": client_name,
                    "scopes": list(scopes),
                    "resource": resource,
                    "reason": reason,
                }
            )

    def pending(self, request_uri: str | None) -> Pending | None:
        with self._lock:
            found = self._pending.get(request_uri or "")
        if found is None or found.used or found.expires_at <= time.time():
            return None
        return found

    def finish(self, pending: Pending) -> bool:
        """Mark a pushed request decided; False if it already was (single use)."""
        with self._lock:
            if pending.used:
                return False
            pending.used = True
            return True

    def new_code(self, code: Code) -> str:
        value = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[digest(value)] = code
        return value

    def take_code(self, value: str) -> Code | None:
        """The code's record (used or not) while it is remembered; marks it used."""
        with self._lock:
            code = self._codes.get(digest(value))
        return code

    def _sweep(self) -> list[Pending]:
        now = time.time()
        expired = [p for p in self._pending.values() if p.expires_at < now]
        for pending in expired:
            del self._pending[pending.request_uri]
        return expired

    def _sweep_codes(self) -> list[Code]:
        """Forget codes past their replay window; the public ones never redeemed."""
        now = time.time()
        unredeemed = []
        for key in [k for k, c in self._codes.items() if c.expires_at + CODE_TTL < now]:
            code = self._codes.pop(key)
            if code.agent is not None and not code.used:
                unredeemed.append(code)
        return unredeemed


_STATES: dict[int, AuthState] = {}
_STATES_LOCK = threading.Lock()


def for_core(core: Core) -> AuthState:
    """The issuer state of this daemon (created at start by ``start``)."""
    with _STATES_LOCK:
        state = _STATES.get(id(core))
        if state is None:
            state = _STATES[id(core)] = AuthState(core)
        return state
