"""Org policy operations behind the control API: schema, check, reload, explain."""

from __future__ import annotations

import logging
from typing import Any

from kontext.common import wire
from kontextd import agents, credentials
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.policy import loader
from kontextd.policy.cedar import CedarOrgPolicy
from kontextd.policy.layers import denial_message

log = logging.getLogger("kontextd.policy")


def _org(core: Core) -> CedarOrgPolicy:
    org = core.org_policy
    if org is None:
        raise ApiError(wire.CONFIG, "this daemon runs without the Cedar org-policy layer")
    return org


def status(core: Core) -> dict[str, Any]:
    """Which files are loaded, which policies (id → FILE:LINE), and every error."""
    org = _org(core)
    bundle = org.bundle
    return {
        "dirs": org.dirs,
        "files": bundle.files,
        "policies": dict(bundle.where),
        "errors": list(bundle.errors),
        "system_dir_ignored": loader.system_dir().ignored,
    }


def started_record(core: Core) -> dict[str, Any]:
    """For ``daemon.started``: which policy the daemon runs, file by file with its hash."""
    org = core.org_policy
    system = loader.system_dir()
    record: dict[str, Any] = {"system_dir": system.path}
    if system.ignored:
        record["system_dir_ignored"] = system.ignored
    if org is not None:
        record["files"] = dict(org.bundle.hashes)
        record["errors"] = len(org.bundle.errors)
    return record


def check(core: Core) -> dict[str, Any]:
    """``status`` after picking up any edit the poller has not seen yet."""
    reload_if_changed(core)
    return status(core)


def schema(core: Core) -> dict[str, Any]:
    return {"schema": _org(core).schema_text}


def reload(core: Core, why: str) -> dict[str, Any]:
    """Load the files again, swap atomically, and audit what was loaded."""
    org = _org(core)
    bundle = org.reload()
    with core.store.transaction() as tx:
        tx.append_event(
            {
                "event": "policy.reloaded",
                "trigger": why,
                "files": bundle.files,
                "hashes": dict(bundle.hashes),
                "policies": sorted(bundle.where),
                "errors": bundle.errors[:10],
            }
        )
    if bundle.errors:
        log.warning("org policy is broken; denying everything: %s", bundle.errors[0])
    return status(core)


def reload_if_changed(core: Core) -> bool:
    """Called about once a second by the daemon's housekeeping thread."""
    org = core.org_policy
    if org is None or not org.changed():
        return False
    reload(core, "files changed")
    return True


def explain(core: Core, body: dict[str, Any], peer_pid: int | None) -> dict[str, Any]:
    """A dry run of exactly the evaluation ``exec`` gets; nothing is minted or audited.
    The caller's facts (a terminal, the login) are the asking process's own."""
    request, result = credentials.evaluate(core, body, peer_pid)
    if request.agent is None:  # not "consent to it": it does not exist
        raise agents.unknown(core, request.agent_name)
    return {
        "agent": f"agent:{request.agent_name}",
        "scopes": list(request.scopes),
        "target": request.target,
        "ttl": request.ttl,
        "allowed": result.allowed,
        "message": denial_message(result),
        "layers": [
            {
                "layer": v.layer,
                "decision": v.decision,
                "reason": v.reason,
                "policy_ids": list(v.policy_ids),
            }
            for v in result.verdicts
        ],
    }
