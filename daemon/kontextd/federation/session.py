"""A CI session: verify the job's token, find the rules that name it, start the session.

``federate`` runs every check first (``verify``, then the trust rules from
``sources``, then single use) and changes nothing but the audit until all pass:
a refused token leaves the current session as it was. A session whose user is
the workload then begins (``oauth.session.begin``), holding the matching rules,
each with its end:

- a rule's end is the token's ``exp`` — the session lives as long as the proof
  of identity does — unless the rule names ``session = "30m"`` (for jobs longer
  than the platform's token), and never beyond ``[ci] max_session`` (1 h);
- the session ends with its last rule; its credentials end with it (the reaper
  calls ``end_due``), audited as ``session.ended``; it stays the current session,
  ended, so nothing more is issued until the next login.

The same job (workload, run and attempt) logging in again with a fresh token
renews its session instead of replacing it, so the credentials of commands still
running are kept. Replacing another live session, or one with grants or
credentials, needs ``--force`` (as ``kontext login`` does, issue 19).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

from kontext.common.ci_config import PLATFORMS
from kontextd.core import Core
from kontextd.errors import invalid
from kontextd.federation import platforms, sources, verify
from kontextd.federation.layer import granted
from kontextd.federation.refusal import POLICY, REPLAY, Refused
from kontextd.federation.trust import Rule
from kontextd.oauth import events, lifecycle
from kontextd.oauth import session as login_session
from kontextd.store.federation_sql import FederatedRow, FederationStore
from kontextd.store.oauth_sql import FEDERATED, SessionRow

log = logging.getLogger("kontextd.federation")
ENDED_BY_LIMIT = "it reached its limit (ci.max_session, or its trust rule's session)"


def settings(core: Core) -> dict[str, Any]:
    """``GET /v1/session/federation``: what the CLI asks the platform for."""
    ci = core.config.ci
    return {"audience": ci.audience, "issuers": ci.issuers, "max_session": ci.max_session}


def _body(body: dict[str, Any]) -> tuple[str, str, str | None, bool]:
    platform, token, issuer = body.get("platform"), body.get("token"), body.get("issuer")
    force = body.get("force", False)
    if platform not in PLATFORMS:
        raise invalid(f"platform must be one of {', '.join(PLATFORMS)}")
    if not isinstance(token, str) or not token:
        raise invalid("token must be the CI platform's OIDC token")
    if issuer is not None and not isinstance(issuer, str):
        raise invalid("issuer must be the issuer's URL")
    if not isinstance(force, bool):
        raise invalid("force must be true or false")
    return str(platform), token, issuer, force


def _refused(core: Core, platform: str, exc: Refused, presented: dict[str, Any]) -> Refused:
    events.record(
        core,
        "federation.refused",
        platform=platform,
        check=exc.check,
        reason=exc.message,
        presented=presented,
    )
    return exc


def federate(core: Core, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/session/federate``: every check, then the session (module docstring)."""
    platform, token, issuer, force = _body(body)
    claimed = {"verified": False, **platforms.claimed(verify.unverified_claims(token))}
    try:
        verified = verify.verify(core.config.ci, platform, token, issuer)
    except Refused as exc:
        raise _refused(core, platform, exc, claimed) from None
    workload = verified.workload
    presented = {"verified": True, **workload.audit()}
    db = FederationStore(core.store)
    try:
        rules = _matching(core, workload, body.get("proof"))
        current = db.current_session()
        if not force and not _same_job(current, workload):
            # Another live login, or grants or credentials at stake (issue 19): asked for.
            login_session.refuse_replacing(core, current)
        if not db.claim_token(verified.replay_key, verified.expires_at):
            raise Refused(REPLAY, "this token already started a session; request a new one")
    except Refused as exc:
        raise _refused(core, platform, exc, presented) from None
    return _start(core, verified, rules)


def _matching(core: Core, workload: platforms.Workload, proof: Any) -> tuple[list[Rule], Any]:
    found = sources.gather(workload, proof, core.config.ci.repository_policy)
    matched = [r for r in found.rules if r.misses(workload) is None]
    if matched:
        return matched, found.sources
    check, why = found.passed_over[0] if found.passed_over else (POLICY, "")
    read = "; ".join(f"{s.get('file')} ({len(s['rules'])} rules)" for s in found.sources)
    detail = f"no trust rule names {workload.describe()}"
    detail += f" (read: {read})" if read else " (no trust policy was read)"
    raise Refused(check, f"{why}; {detail}" if why else detail)


def _ends(core: Core, rules: list[Rule], token_expires: float, now: float) -> list[float]:
    cap = now + core.config.ci.max_session
    return [min(cap, now + r.session if r.session is not None else token_expires) for r in rules]


def _record(
    session_id: str, verified: verify.Verified, rules: list[Rule], ends: list[float], where: Any
) -> FederatedRow:
    grants = [{"rule": r.to_json(), "until": u} for r, u in zip(rules, ends, strict=True)]
    return FederatedRow(
        session_id=session_id,
        platform=verified.platform,
        rules=json.dumps(grants, separators=(",", ":")),
        sources=json.dumps(where, separators=(",", ":")),
        token_expires_at=verified.expires_at,
    )


def _same_job(current: SessionRow | None, workload: platforms.Workload) -> bool:
    if current is None or not current.federated or current.ended_at is not None:
        return False
    before = json.loads(current.workload or "{}")
    now = workload.audit()
    return all(before.get(k) == now.get(k) for k in ("id", "issuer", "run_id", "run_attempt"))


def _start(core: Core, verified: verify.Verified, found: tuple[list[Rule], Any]) -> dict[str, Any]:
    rules, where = found
    db = FederationStore(core.store)
    now = time.time()
    ends = _ends(core, rules, verified.expires_at, now)
    workload = verified.workload
    current = db.current_session()
    fields: dict[str, Any] = {}
    if current is not None and _same_job(current, workload):
        record = _record(current.id, verified, rules, ends, where)
        db.renew(record, max(max(ends), current.expires_at))
        login_session.restore(core)
        event, fields["session"] = "session.renewed", current.id
    else:
        session = SessionRow(
            id=secrets.token_urlsafe(12),
            user=workload.user,
            display_name=workload.describe(),
            issuer=workload.issuer,
            client_id=core.config.ci.audience,
            subject=workload.subject,
            external=1,
            created_at=now,
            expires_at=max(ends),
            checked_at=now,
            ended_at=None,
            end_reason=None,
            kind=FEDERATED,
            workload=json.dumps(workload.audit(), separators=(",", ":")),
        )
        record = _record(session.id, verified, rules, ends, where)
        login_session.begin(core, session, current)
        db.insert(record)
        event, fields["session"] = "session.started", session.id
        fields["replaced"] = current.id if current is not None else None
    events.record(
        core,
        event,
        **fields,
        issuer=workload.issuer,
        external=True,
        kind=FEDERATED,
        rules=[r.name for r in rules],
        policy=where,
        expires_in=f"{int(max(ends) - now)}s",
    )
    return show(core)


def show(core: Core) -> dict[str, Any]:
    """The session as ``whoami`` shows it; a CI session with its rules and their ends."""
    info = login_session.show(core)
    db = FederationStore(core.store)
    current = db.current_session()
    record = db.federated(current.id) if current is not None and current.federated else None
    if record is not None:
        info["rules"] = [
            {"rule": rule.name, "agents": list(rule.agents), "scopes": list(rule.scopes),
             "targets": list(rule.targets), "until": until}
            for rule, until in granted(record)
        ]  # fmt: skip
        info["platform"] = record.platform
    return info


def end_due(core: Core) -> bool:
    """End the current CI session once its time is up (the reaper calls this), with
    every credential it holds; audited as ``session.ended``. True if it ended now."""
    db = FederationStore(core.store)
    current = db.current_session()
    if current is None or not current.federated or current.ended_at is not None:
        return False
    if current.expires_at > time.time():
        return False
    record = db.federated(current.id)
    to_token = record is not None and abs(current.expires_at - record.token_expires_at) <= 1
    reason = "its CI token expired" if to_token else ENDED_BY_LIMIT
    lifecycle.end(core, current, reason)  # audited as session.ended, with what ended
    login_session.restore(core)  # it stays current, ended: nothing more is issued
    log.info("CI session of %s ended: %s", current.user, reason)
    return True
