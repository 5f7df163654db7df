"""Who may use the dashboard: one-time links, session cookies, CSRF tokens.

The invariant: a browser holds a dashboard session only because it presented a
link the daemon handed out over the control socket — so only this OS user,
outside any agent, asked for it — once, within ``LINK_TTL`` seconds. The link is
exchanged for a random session id sent back as an ``HttpOnly``, ``SameSite=Strict``
cookie scoped to ``/dashboard``; every state-changing request must also carry the
session's CSRF token. All of it lives in the daemon's memory only: a restart ends
every session and link.

Secrets are kept as SHA-256 digests and looked up by digest, so no comparison
runs over the secret itself; the CSRF token is compared in constant time.
Everything runs on the monotonic clock (a wall clock set back cannot revive a link).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

LINK_TTL = 120.0  # the browser must open the link within two minutes
SESSION_TTL = 12 * 3600.0  # a session ends after 12 hours, or when the daemon stops
MAX_LINKS = 16
MAX_SESSIONS = 32
PATH = "/dashboard"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Session:
    """One browser's dashboard session; ``repr`` hides its CSRF token."""

    key: str  # the SHA-256 of the cookie value
    csrf: str
    expires: float  # monotonic

    def __repr__(self) -> str:
        return f"Session(key={self.key[:8]}…, csrf=<redacted>)"

    def csrf_ok(self, presented: str | None) -> bool:
        """The request carries this session's CSRF token (constant-time compare)."""
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


class DashboardAccess:
    """The links handed out and the sessions opened with them (thread-safe: links are
    made on a control-socket thread, redeemed on the loopback loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._links: dict[str, float] = {}  # digest -> expiry
        self._sessions: dict[str, Session] = {}  # digest of the cookie value -> session

    def new_link(self) -> str:
        """A fresh one-time secret for ``/dashboard/open``; the oldest unused ones go
        when more than ``MAX_LINKS`` are waiting."""
        secret = secrets.token_urlsafe(32)
        with self._lock:
            self._sweep()
            while len(self._links) >= MAX_LINKS:
                self._links.pop(next(iter(self._links)))
            self._links[_digest(secret)] = self._clock() + LINK_TTL
        return secret

    def redeem(self, link: str | None) -> tuple[str, Session] | None:
        """Spend a link (whatever the outcome, it is gone); on success the new session's
        cookie value and the session."""
        if not link or len(link) > 100:
            return None
        with self._lock:
            self._sweep()
            expiry = self._links.pop(_digest(link), None)
            if expiry is None or expiry <= self._clock():
                return None
            while len(self._sessions) >= MAX_SESSIONS:  # the oldest session makes room
                self._sessions.pop(next(iter(self._sessions)))
            cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            session = Session(_digest(cookie), csrf, self._clock() + SESSION_TTL)
            self._sessions[session.key] = session
        return cookie, session

    def session(self, cookie: str | None) -> Session | None:
        """The live session a cookie value names, or None."""
        if not cookie or len(cookie) > 100:
            return None
        with self._lock:
            session = self._sessions.get(_digest(cookie))
            if session is None:
                return None
            if session.expires <= self._clock():
                del self._sessions[session.key]
                return None
            return session

    def end(self, session: Session) -> None:
        """Sign a session out."""
        with self._lock:
            self._sessions.pop(session.key, None)

    def counts(self) -> tuple[int, int]:
        """(links waiting, sessions open)."""
        with self._lock:
            self._sweep()
            return len(self._links), len(self._sessions)

    def _sweep(self) -> None:
        now = self._clock()
        for key in [k for k, expiry in self._links.items() if expiry <= now]:
            del self._links[key]
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]


def cookie_name(port: int) -> str:
    """Cookies ignore ports (RFC 6265 §8.5): two daemons on one host must not clobber
    each other's session, so the name carries the port."""
    return f"kontext_dashboard_{port}"


def set_cookie(port: int, value: str) -> str:
    """The ``Set-Cookie`` header value: HttpOnly (no script reads it), SameSite=Strict (no
    other site's request carries it), scoped to the dashboard's path, gone with the session."""
    return (
        f"{cookie_name(port)}={value}; Path={PATH}; HttpOnly; SameSite=Strict; "
        f"Max-Age={int(SESSION_TTL)}"
    )


def clear_cookie(port: int) -> str:
    return f"{cookie_name(port)}=; Path={PATH}; HttpOnly; SameSite=Strict; Max-Age=0"


def read_cookie(header: str | None, port: int) -> str | None:
    """Our cookie's value from a ``Cookie`` header (RFC 6265 §5.4: ``name=value; …``)."""
    if not header:
        return None
    wanted = cookie_name(port)
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == wanted:
            return value
    return None
