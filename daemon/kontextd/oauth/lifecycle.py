"""How sessions end and begin, and what ends with them.

A session — a login, or the local account's while nobody is logged in — is the
ground its grants stand on (DESIGN.md: one approval per session). Ending one —
a new login, ``logout``, the issuer refusing to refresh it — ends, audited: the
session itself (kept as a record, never deleted), every grant approved in it and
every credential resting on those, the user's login tokens and whatever was
exchanged from them, and every live credential of its user. After ``logout`` a
new local session begins with a new id, so nothing approved before the login
comes back, and the audit tells the sessions apart (``session`` in
``session.started``/``session.ended`` and ``consent.granted``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from kontextd import credentials
from kontextd.consent import grants
from kontextd.consent.layer import LOCAL_SESSION, effective_expiry
from kontextd.core import Core, local_user
from kontextd.oauth import events
from kontextd.oauth.state import for_core
from kontextd.store.oauth_sql import SessionRow

REFRESH_SECRET = "session-refresh-token"  # noqa: S105 - a secret's name
FOREVER = 253402300799.0  # 9999-12-31: the local account's session has no expiry


@dataclass(frozen=True)
class Stake:
    """What ending a session would end: its live grants and its user's live credentials."""

    grants: int
    credentials: int

    def describe(self) -> str:
        return (
            f"{self.grants} grant{'s' if self.grants != 1 else ''} and "
            f"{self.credentials} live credential{'s' if self.credentials != 1 else ''}"
        )


def is_live_login(session: SessionRow | None) -> bool:
    """A login (not the local account's session) that has neither ended nor expired."""
    return (
        session is not None
        and not session.local
        and session.ended_at is None
        and session.expires_at > time.time()
    )


def at_stake(core: Core, session: SessionRow | None) -> Stake:
    """The grants of ``session`` still in force, and its user's live credentials."""
    if session is None or session.ended_at is not None:
        return Stake(0, 0)
    now = time.time()
    ends = None if session.local else session.expires_at
    live = [
        g
        for g in for_core(core).db.live_grants(session.user)
        if g.session_id == session.id and effective_expiry(g, ends) > now
    ]
    creds = [c for c in core.store.live_credentials() if c.user == session.user]
    return Stake(len(live), len(creds))


def end(core: Core, session: SessionRow, reason: str) -> Stake:
    """End ``session`` and everything resting on it; audited once (``session.ended``)."""
    db = for_core(core).db
    why = f"session ended: {reason}"
    live = [c for c in core.store.live_credentials() if c.user == session.user]
    ended_now = db.end_session(session.id, reason)
    revoked = grants.revoke(core, why, session=session.id)  # and the credentials on them
    if not session.local:
        db.revoke_user_tokens(session.user, why)  # login tokens; exchanged ones end below
        core.secrets.delete(REFRESH_SECRET)
    credentials.end_all(core, live, "revoked", why)
    if ended_now:
        events.record(
            core,
            "session.ended",
            user={"id": session.user},
            session=session.id,
            local=bool(session.local),
            session_user=session.user,
            issuer=session.issuer or None,
            reason=reason,
            grants_revoked=len(revoked),
            credentials_revoked=len(live),
        )
    return Stake(len(revoked), len(live))


def start_local(core: Core, session_id: str | None = None) -> SessionRow:
    """Begin a session of the local account (before any login, and after each logout)."""
    now = time.time()
    account = local_user()
    row = SessionRow(
        id=session_id or f"local-{secrets.token_urlsafe(9)}",
        user=account,
        display_name=None,
        issuer="",
        client_id="",
        subject=account.removeprefix("user:"),
        external=0,
        created_at=now,
        expires_at=FOREVER,
        checked_at=now,
        ended_at=None,
        end_reason=None,
        local=1,
    )
    for_core(core).db.insert_session(row)
    events.record(core, "session.started", user={"id": account}, session=row.id, local=True)
    return row


def first_local(core: Core) -> None:
    """The first start with session records: begin the local account's session, and end
    grants from before (they named no session, so a logout could not end them)."""
    start_local(core)
    grants.revoke(
        core,
        "sessions are kept as records now: approve again (grants from before named none)",
        session=LOCAL_SESSION,
    )
