"""The user's login session, held by the daemon.

The CLI brings the authorization code and its PKCE verifier; the daemon redeems
them, validates the ID token, keeps the refresh token in secret storage (never
printed, never sent back) and from then on names the user in every credential
and audit event. It refreshes against the issuer to confirm the user is still
active; when the issuer refuses, the session ends — audited — and no new
credentials are issued until the user logs in again.

Before any login, and after each logout, the user is the local account, in a
session of its own (``kontextd.oauth.lifecycle``): grants belong to the session
they were approved in and end with it.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import Any

from kontext.common import wire
from kontextd.core import Core, local_user
from kontextd.errors import ApiError, invalid
from kontextd.oauth import clients, events, lifecycle, relying
from kontextd.oauth.lifecycle import REFRESH_SECRET
from kontextd.oauth.state import for_core
from kontextd.store.oauth_sql import SessionRow

log = logging.getLogger("kontextd.session")
RECHECK = 300.0
FIELDS = ("issuer", "client_id", "code", "code_verifier", "redirect_uri")


def _field(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise invalid(f"{name} must be a non-empty string")
    return value


def _auth(core: Core, issuer: str, client_id: str) -> tuple[str, str] | None:
    """The embedded issuer's clients authenticate with the secret; others are public."""
    return (client_id, for_core(core).secret) if issuer == core.issuer else None


def restore(core: Core) -> None:
    """At start: the user of the last session (ended ones too: they block issuance)."""
    session = for_core(core).db.current_session()
    if session is not None:
        _name_user(core, session)


def _name_user(core: Core, session: SessionRow | None) -> None:
    """``core.user`` and who vouched for it, from the current session (None: local).
    A CI session's workload (repository, ref, workflow, run) joins every audit event."""
    workload = json.loads(session.workload) if session is not None and session.workload else None
    core.store.event_fields = {"workload": workload} if workload else {}
    if session is None or session.local:
        core.user, core.login_issuer, core.login_external = local_user(), "", False
        return
    core.user = session.user
    live = session.ended_at is None
    core.login_issuer = session.issuer if live else ""
    core.login_external = bool(session.external) and live


def begin(core: Core, session: SessionRow, current: SessionRow | None) -> None:
    """Make ``session`` the current one: ``current`` (the one before it) ends, with its
    grants and credentials, and ``session``'s user is named in every credential from
    now on. The caller audits ``session.started``."""
    if current is not None:
        lifecycle.end(core, current, "replaced by a new login")
    for_core(core).db.insert_session(session)
    _name_user(core, session)


def _user(core: Core, issuer: str, claims: dict[str, Any]) -> str:
    """Our own issuer's ``sub`` already is the user (the OS account, ``user:…``);
    an external provider's user is its verified email, else ``ISSUER#SUB``."""
    subject = str(claims["sub"])
    if issuer == core.issuer and subject.startswith("user:"):
        return subject
    return relying.user_of(claims, issuer)


def _external_required(core: Core, issuer: str) -> None:
    if issuer == core.issuer and core.config.require_external_issuer:
        raise ApiError(wire.DENIED, external_required_message(core))


def external_required_message(core: Core) -> str:
    return (
        f"login.require_external_issuer is true in {core.paths.config_file}: sign in with "
        "your organisation's provider, 'kontext login --issuer URL'"
    )


def login(core: Core, body: dict[str, Any]) -> dict[str, Any]:
    """Redeem the CLI's code at the issuer and start a session in place of the current
    one — refused while that one is a live login or has grants or credentials to
    end, unless ``force`` (the CLI asks the user first)."""
    issuer, client_id, code, verifier, redirect = (str(_field(body, n)) for n in FIELDS)
    _external_required(core, issuer)
    nonce = _field(body, "nonce", required=False)
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise invalid("force must be true or false")
    current = for_core(core).db.current_session()
    if not force:
        refuse_replacing(core, current)
    try:
        meta = relying.discover(issuer)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect,
            "client_id": client_id,
        }
        answer = relying.token_request(meta, form, _auth(core, issuer, client_id))
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise relying.ProviderError("the provider sent no ID token")
        claims = relying.validate_id_token(meta, id_token, client_id, nonce)
        if issuer != core.issuer:
            claims = relying.with_userinfo(meta, claims, answer.get("access_token"))
    except relying.ProviderRefused as exc:
        raise ApiError(wire.DENIED, f"the issuer refused the login: {exc}") from exc
    except relying.ProviderError as exc:
        raise ApiError(wire.INVALID, f"login failed: {exc}") from exc
    refresh = answer.get("refresh_token")
    now = time.time()
    session = SessionRow(
        id=secrets.token_urlsafe(12),
        user=_user(core, issuer, claims),
        display_name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        issuer=issuer,
        client_id=client_id,
        subject=str(claims["sub"]),
        external=int(issuer != core.issuer),
        created_at=now,
        expires_at=now + int(answer.get("expires_in", 600) or 600)
        if not isinstance(refresh, str)
        else now + 12 * 3600,
        checked_at=now,
        ended_at=None,
        end_reason=None,
    )
    begin(core, session, current)
    if isinstance(refresh, str):
        core.secrets.put(REFRESH_SECRET, refresh)
    events.record(
        core,
        "session.started",
        session=session.id,
        issuer=issuer,
        external=bool(session.external),
        replaced=current.id if current is not None else None,
    )
    return show(core)


def refuse_replacing(core: Core, current: SessionRow | None) -> None:
    """A login in place of a live one, or of one with grants or credentials, is asked
    for explicitly (issue 19: a second login silently ended every running agent)."""
    if current is None:
        return
    stake = lifecycle.at_stake(core, current)
    live = lifecycle.is_live_login(current)
    if not live and not stake.grants and not stake.credentials:
        return
    who = (
        f"already logged in as {current.user} ({current.issuer}) until "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(current.expires_at))}"
        if live
        else f"the local account {current.user} has approvals"
    )
    raise ApiError(
        wire.CONFLICT,
        f"{who}; logging in ends that session, {stake.describe()}: "
        "run 'kontext login --force' to go ahead",
    )


def logout(core: Core) -> dict[str, Any]:
    """End the login session (its grants, tokens and credentials) and begin a new
    session of the local account: nothing approved before comes back."""
    session = for_core(core).db.current_session()
    if session is None or session.local:
        return {"logged_out": False, "user": core.user}
    stake = lifecycle.end(core, session, "logged out")
    lifecycle.start_local(core)
    _name_user(core, None)
    return {
        "logged_out": True,
        "user": session.user,
        "grants_revoked": stake.grants,
        "credentials_revoked": stake.credentials,
    }


def show(core: Core) -> dict[str, Any]:
    """The current session, and what ending it would end (grants, live credentials)."""
    session = for_core(core).db.current_session()
    stake = lifecycle.at_stake(core, session)
    counts = {"grants": stake.grants, "live_credentials": stake.credentials}
    if session is None or session.local:
        return {
            "user": core.user,
            "issuer": None,
            "logged_in": False,
            "session": session.id if session else None,
            **counts,
        }
    return {
        "user": session.user,
        "display_name": session.display_name,
        "issuer": session.issuer,
        "external": bool(session.external),
        "logged_in": lifecycle.is_live_login(session),
        "expires_at": session.expires_at,
        "checked_at": session.checked_at,
        "ended": session.end_reason,
        "session": session.id,
        "kind": session.kind,
        **({"workload": json.loads(session.workload)} if session.workload else {}),
        **counts,
    }


def check(core: Core) -> dict[str, Any]:
    """Refresh against the issuer now; a refusal ends the session."""
    db = for_core(core).db
    session = db.current_session()
    if session is None or session.ended_at is not None or session.federated:
        return show(core)  # a CI session has nothing to refresh: it ends on its own clock
    refresh = core.secrets.get(REFRESH_SECRET)
    try:
        if refresh is None:
            raise relying.ProviderRefused("no refresh token is held for this session")
        meta = relying.discover(session.issuer)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": session.client_id,
        }
        answer = relying.token_request(meta, form, _auth(core, session.issuer, session.client_id))
    except relying.ProviderRefused as exc:
        _refused(core, session, str(exc))
        return show(core)
    except relying.ProviderError as exc:
        raise ApiError(
            wire.INVALID, f"cannot reach the issuer to check the session: {exc}"
        ) from exc
    if isinstance(answer.get("refresh_token"), str):
        core.secrets.put(REFRESH_SECRET, answer["refresh_token"])
    db.touch_session(session.id, max(session.expires_at, time.time() + 600))
    return show(core)


def _refused(core: Core, session: SessionRow, error: str) -> None:
    reason = f"the issuer refused to refresh the session ({error})"
    lifecycle.end(core, session, reason)  # it stays current, ended: nothing is issued
    core.login_issuer, core.login_external = "", False
    log.warning("login session ended: %s", reason)


def monitor(core: Core) -> None:
    """Background: re-check an external session every few minutes."""
    while not core.stopping.wait(30.0):
        session = for_core(core).db.current_session()
        if (
            session is None
            or session.ended_at is not None
            or not session.external
            or session.federated
        ):
            continue
        if time.time() - session.checked_at < RECHECK:
            continue
        try:
            check(core)
        except ApiError as exc:
            log.info("session check failed: %s", exc.message)
        except Exception:
            log.exception("session check failed")


def start(core: Core) -> None:
    """At daemon start: the issuer's secret file, the session's user, the monitor."""
    for_core(core)
    if for_core(core).db.current_session() is None:
        lifecycle.first_local(core)
    restore(core)
    threading.Thread(target=monitor, args=(core,), name="session", daemon=True).start()


__all__ = ["check", "clients", "login", "logout", "show", "start"]
