"""How credentials end: one, with everything exchanged from it; under a grant; on time.

A credential rests on its parent (the credential or user token it was exchanged
from) and on the consent grant that allowed it. Ending one ends, in the same
transaction, every live credential below it — breadth first, each with its own
audit event naming its parent — so revoking an exec's credential, closing its
lease, or revoking the user's token leaves nothing exchanged from it alive.
"""

from __future__ import annotations

import math
import time
from typing import Any

from kontextd import agents
from kontextd.core import Core
from kontextd.store.db import Store
from kontextd.store.oauth_sql import OAuthStore
from kontextd.store.rows import EXEC, AgentRow, CredentialRow


def _ended_event(
    cred: CredentialRow, agent: AgentRow | None, event: str, reason: str
) -> dict[str, Any]:
    fields = {
        "event": event,
        "agent": agents.agent_ref(agent, cred.agent),
        "user": {"id": cred.user},
        "integration": ",".join(cred.audience),
        "scopes": list(cred.scopes),
        "target": cred.target,
        "jti": cred.jti,
        "reason": reason,
        "lived": f"{max(0, math.floor(time.time() - cred.issued_at))}s",
    }
    if cred.kind != EXEC:
        fields["kind"] = cred.kind
    if cred.parent is not None:
        fields["parent"] = cred.parent
    return fields


def end(core: Core, jti: str, status: str, reason: str) -> bool:
    """End one live credential (``revoked`` or ``expired``) and audit it once; every
    credential exchanged from it, and from those, ends with it in the same transaction."""
    cred = core.store.credential(jti)
    if cred is None or cred.status != "live":
        return False
    with core.store.transaction() as tx:
        return bool(_end_tree(tx, [cred], status, reason))


def end_descendants(core: Core, parent: str, reason: str) -> int:
    """End every live credential exchanged from ``parent`` (e.g. a revoked user token)."""
    with core.store.transaction() as tx:
        children = tx.live_children(parent)
        _end_tree(tx, children, "revoked", f"its parent {parent} ended: {reason}")
    return len(children)


def end_under_grants(core: Core, grant_ids: list[str], reason: str) -> list[str]:
    """End every live credential resting on one of these consent grants (and their
    descendants): a credential dies with its grant."""
    with core.store.transaction() as tx:
        return _end_tree(tx, tx.live_under_grants(grant_ids), "revoked", reason)


def end_all(core: Core, creds: list[CredentialRow], status: str, reason: str) -> list[str]:
    """End these credentials and their descendants in one transaction; the jtis ended."""
    with core.store.transaction() as tx:
        return _end_tree(tx, creds, status, reason)


def _end_tree(tx: Store, roots: list[CredentialRow], status: str, reason: str) -> list[str]:
    """End ``roots`` and, breadth first, every live descendant; one event each.
    Returns the jtis ended (a root no longer live ends nothing below it)."""
    event = "credential.expired" if status == "expired" else "credential.revoked"
    queue = [(cred, reason) for cred in roots]
    ended: list[str] = []
    while queue:
        cred, why = queue.pop(0)
        if not tx.end_credential(cred.jti, status, why):
            continue
        ended.append(cred.jti)
        tx.append_event(_ended_event(cred, tx.agent(cred.agent), event, why))
        queue += [(c, f"its parent {cred.jti} ended: {reason}") for c in tx.live_children(cred.jti)]
    return ended


EXPIRE_CHUNK = 100  # credentials ended per transaction by the reaper
REACHED = "reached its expiry"


def expire_due(core: Core) -> int:
    """Mark credentials past ``exp`` expired, audited each; run by the reaper thread.

    A hundred to a transaction: one commit for each was most of an expiry's cost
    when per-request tokens (``/token``, 60 s) expire by the thousand, and a chunk
    holds the store's lock only a few milliseconds, so the loops' batches wait little."""
    due = core.store.due_credentials(time.time())
    ended = 0
    for start in range(0, len(due), EXPIRE_CHUNK):
        ended += len(end_all(core, due[start : start + EXPIRE_CHUNK], "expired", REACHED))
    return ended


def revoke_orphans(core: Core) -> int:
    """At start: credentials left live by a previous daemon have no lease holder any more."""
    return sum(
        end(core, c.jti, "revoked", "lease lost: the daemon restarted")
        for c in core.store.live_credentials()
    )


def end_agent_grants(
    core: Core, agent: str, reason: str, *, clients_only: bool = True
) -> list[str]:
    """End ``agent``'s grants, the credentials on them and their refresh tokens.
    A revoked agent loses those approved for MCP clients (public OAuth clients) and
    keeps the user's own (``agent enable`` undoes a revocation); a deleted one
    (``clients_only=False``) loses every grant, so an agent created later under the
    same name inherits none. Audited as ``consent.revoked``."""
    ids = OAuthStore(core.store).revoke_grants(reason, agent=agent, clients_only=clients_only)
    if ids:
        with core.store.transaction() as tx:
            ended = _end_tree(tx, tx.live_under_grants(ids), "revoked", reason)
            tx.append_event(
                {
                    "event": "consent.revoked",
                    "user": core.user_ref(),
                    "agent": {"id": f"agent:{agent}"},
                    "grants": ids,
                    "reason": reason,
                    "credentials_revoked": len(ended),
                }
            )
    return ids
