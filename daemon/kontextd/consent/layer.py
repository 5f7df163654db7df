"""The user-consent layer: allow only what the user approved for this agent.

Consent is asked only for what org policy and the agent's own permissions
allow; a request they refuse is reported under their name, so a user is never
sent to a consent page for something that would be refused anyway.

The layer reads sessions and grants through ``GrantSource`` — a narrow view of
the store (``kontextd.store.oauth_sql.OAuthStore`` is one) — so it needs nothing
of the daemon's core, and the core can build it without an import circle.
"""

from __future__ import annotations

import time
from typing import Protocol

from kontextd.policy.layers import USER_CONSENT
from kontextd.policy.request import CredentialRequest, Verdict
from kontextd.store.oauth_sql import GrantRow, SessionRow

LOCAL_SESSION = "local"  # grants made before sessions were rows (migration 6) name this
NO_SESSION = ""  # an ended session: no grant names it, so none applies


class GrantSource(Protocol):
    """What consent decisions read: the current login session and the live grants."""

    def current_session(self) -> SessionRow | None: ...

    def live_grants(self, user: str | None, agent: str | None = None) -> list[GrantRow]: ...


def session_id(db: GrantSource) -> str:
    """The current session's id — a login's or the local account's — whose grants
    apply; nothing applies while the current login has ended (until the next one)."""
    session = db.current_session()
    if session is None:
        return LOCAL_SESSION
    return session.id if session.ended_at is None else NO_SESSION


def session_end(db: GrantSource) -> float | None:
    """When the current login session ends (None: the local account's never does)."""
    session = db.current_session()
    if session is None or session.local or session.ended_at is not None:
        return None
    return session.expires_at


def effective_expiry(grant: GrantRow, session_ends: float | None) -> float:
    """A grant never outlives the session it was approved in (README "Login and consent")."""
    return grant.expires_at if session_ends is None else min(grant.expires_at, session_ends)


def _same_target(a: str | None, b: str | None) -> bool:
    # Targets are names, compared as the gateway does: case-insensitively.
    return a is not None and b is not None and a.lower() == b.lower()


def session_grants(db: GrantSource, user: str, agent: str) -> list[GrantRow]:
    """The live grants of the current session from ``user`` to ``agent``, oldest first."""
    current = session_id(db)
    return [g for g in db.live_grants(user, agent) if g.session_id == current]


def covering(
    db: GrantSource, user: str, agent: str, scopes: tuple[str, ...], target: str | None
) -> GrantRow | None:
    """A live grant of this session covering every scope and the target, if any."""
    for grant in session_grants(db, user, agent):
        if set(scopes) <= set(grant.scopes) and (
            grant.target is None or _same_target(grant.target, target)
        ):
            return grant
    return None


def approved_scopes(db: GrantSource, user: str, agent: str) -> tuple[str, ...]:
    """Every scope the user approved for ``agent`` in this session."""
    scopes: dict[str, None] = {}
    for grant in session_grants(db, user, agent):
        scopes.update(dict.fromkeys(grant.scopes))
    return tuple(scopes)


def grant_command(request: CredentialRequest) -> str:
    """The exact command that approves this request ahead of time."""
    parts = ["kontext consent grant", f"agent:{request.agent_name}"]
    parts += [f"--scope {s}" for s in request.scopes]
    if request.target is not None:
        parts.append(f"--target {request.target}")
    return " ".join(parts)


class GrantConsent:
    """Allows a request covered by a live grant of the current session."""

    name = USER_CONSENT

    def __init__(self, db: GrantSource) -> None:
        self.db = db

    def evaluate(self, request: CredentialRequest) -> Verdict:
        session = self.db.current_session()
        if session is not None and session.ended_at is not None:
            return Verdict(
                self.name,
                "deny",
                f"the login session of {session.user} ended ({session.end_reason}); "
                "run 'kontext login'",
            )
        if session is not None and session.expires_at <= time.time():
            return Verdict(
                self.name,
                "deny",
                f"the login session of {session.user} expired; run 'kontext login'",
            )
        who = f"agent:{request.agent_name}"
        grant = covering(self.db, request.user, request.agent_name, request.scopes, request.target)
        if request.grant is not None:
            grant = self._own(request)
            if grant is None:
                return Verdict(
                    self.name,
                    "deny",
                    f"the grant {request.grant} to {who} ended or does not cover this",
                )
        if grant is None:
            return Verdict(self.name, "deny", self._not_approved(request, who))
        until = effective_expiry(grant, session_end(self.db))
        return Verdict(
            self.name,
            "allow",
            f"{request.user} approved {who} (grant {grant.id})",
            grant_id=grant.id,
            until=until,
        )

    def _own(self, request: CredentialRequest) -> GrantRow | None:
        """The request's own grant (``request.grant``), if live and covering it."""
        for grant in session_grants(self.db, request.user, request.agent_name):
            if (
                grant.id == request.grant
                and set(request.scopes) <= set(grant.scopes)
                and (grant.target is None or _same_target(grant.target, request.target))
            ):
                return grant
        return None

    def _not_approved(self, request: CredentialRequest, who: str) -> str:
        asked = " ".join(request.scopes) or "any scope"
        targeted = [
            g.target
            for g in session_grants(self.db, request.user, request.agent_name)
            if g.target is not None and set(request.scopes) <= set(g.scopes)
        ]
        if targeted and not _same_target(targeted[0], request.target):
            # A grant for one resource never stretches to another, or to none.
            return (
                f"{request.user} approved {asked} for {who} only on target {targeted[0]}, "
                f"not {request.target or 'any target'}; ask for target {targeted[0]} "
                f"or approve with: {grant_command(request)}"
            )
        return f"{request.user} has not approved {asked} for {who}; approve with: " + (
            grant_command(request)
        )
