"""What the library raises, each with the one line a person should read.

::

    KontextError                a kontext call failed (catch this for "any of the below")
    ├── Denied                  the request path or the delegation rules refused
    │                           (``layer`` says which, ``reason`` why)
    ├── NotConnected            the integration has no upstream connection
    │                           (``command`` is what to run)
    ├── Unavailable             no daemon to ask, or no authority to ask with
    │                           (the message says what to do)
    └── InvalidRequest          an argument is malformed (also a ``ValueError``)

``str(exc)`` is the line the ``kontext`` CLI prints after ``kontext:``. No
message, ``repr`` or attribute of these exceptions ever holds a token; they are
raised ``from None`` where the cause would only add transport noise.
"""

from __future__ import annotations

__all__ = [
    "LAYERS",
    "Denied",
    "InvalidRequest",
    "KontextError",
    "NotConnected",
    "Unavailable",
]

# The three layers of the request path (DESIGN.md), named as the daemon's
# ``denied_by`` names them, plus the delegation rules of RFC 8693 exchange
# (scopes and target only shrink; the authority must still be live).
ORG_POLICY = "org_policy"
USER_CONSENT = "user_consent"
AGENT_PERMISSIONS = "agent_permissions"
DELEGATION = "delegation"
LAYERS = (ORG_POLICY, USER_CONSENT, AGENT_PERMISSIONS, DELEGATION)


class KontextError(Exception):
    """Base class of every error the library raises; ``message`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class Denied(KontextError):
    """The credential was refused: a layer of the request path (``org_policy``,
    ``user_consent``, ``agent_permissions``) or the delegation rules
    (``delegation``: a wider scope, another target, an authority that is no
    longer live). Retrying the same request will not help."""

    def __init__(self, message: str, *, layer: str, reason: str) -> None:
        super().__init__(message)
        self.layer = layer
        self.reason = reason


class NotConnected(KontextError):
    """The integration has no upstream credential in the daemon (never connected,
    or its provider refused a refresh). ``command`` connects it."""

    def __init__(self, message: str, *, integration: str) -> None:
        super().__init__(message)
        self.integration = integration
        self.command = f"kontext integration connect {integration}"


class Unavailable(KontextError):
    """Nothing could be asked: no authority (``KONTEXT_TOKEN`` unset and no
    ``token=``), no daemon answering on loopback, or the daemon could not serve
    the request now (its secret storage or disk). The message says what to do."""


class InvalidRequest(KontextError, ValueError):
    """An argument (integration, scope, target, ttl) is malformed, or the daemon
    found a parameter it cannot accept; nothing was issued."""
