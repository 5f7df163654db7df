"""One authorization's secrets: PKCE verifier (RFC 7636), ``state`` and ``nonce``.

A pure object: no I/O. ``repr`` never shows a secret, and the verifier can be
taken exactly once — a login redeems its code once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


class StateMismatch(Exception):
    """A callback's ``state`` is not this login's (a forged or stray redirect)."""


class PkceSession:
    """Verifier, S256 challenge, state and nonce for one authorization request."""

    __slots__ = ("_verifier", "challenge", "nonce", "state")

    def __init__(self) -> None:
        # RFC 7636 §4.1: 43-128 characters; 32 random bytes give 43.
        self._verifier: str | None = secrets.token_urlsafe(48)
        digest = hashlib.sha256(self._verifier.encode()).digest()
        self.challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        self.state = secrets.token_urlsafe(24)
        self.nonce = secrets.token_urlsafe(24)

    def __repr__(self) -> str:
        return "PkceSession(<redacted>)"

    def check_state(self, received: str | None) -> None:
        if received is None or not hmac.compare_digest(received.encode(), self.state.encode()):
            raise StateMismatch("the callback's state does not match this login")

    def take_verifier(self) -> str:
        """The verifier, once; a second call is a bug (a code is redeemed once)."""
        verifier, self._verifier = self._verifier, None
        if verifier is None:
            raise RuntimeError("the PKCE verifier was already used")
        return verifier
