"""The Cedar schema kontext publishes, and how a request becomes Cedar input.

Principal ``Agent`` (``name``, ``owner``: the ``User``); one action per scope
(``Action::"github:pulls:write"``), each a member of an action group ``read``,
``write`` or ``admin`` so ``action in Action::"write"`` works (Cedar §Actions:
action groups); resource ``Target`` (``integration``, ``target`` — the target
string, ``""`` when none). Context: ``user`` (a ``User``), ``ttl`` (requested
seconds), ``interactive`` (the requesting process has a controlling terminal),
``issuer`` (who vouched for the user: the live login session's issuer, ``""``
for the local account), ``external_login`` (that issuer is an external OIDC
provider — only then is ``user`` more than the OS account; rules about named
users need it) and ``time`` (Unix seconds). Every context value is a fact the
daemon established (``policy/facts.py``), never a field of the request.

The actions come from the integration catalogue, so user-defined integrations
in ``config.toml`` get actions too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from kontext.common.integrations import Integration
from kontextd.policy.request import CredentialRequest

GROUPS = ("read", "write", "admin")
READ_VERBS = frozenset({"read", "history"})

HEAD = """// kontext Cedar schema: what org policies can talk about.
// principal: Agent; action: one per scope, grouped in read/write/admin; resource: Target.

entity User;

entity Agent = {
  name: String,
  owner: User,
};

entity Target = {
  integration: String,
  target: String,
};

type RequestContext = {
  user: User,
  ttl: Long,
  interactive: Bool,
  issuer: String,
  external_login: Bool,
  time: Long,
};

action "read", "write", "admin";
"""


def group_of(scope: str) -> str:
    """``pulls:read`` → read, ``chat:write`` → write; anything else is admin (the widest)."""
    verb = scope.rsplit(":", 1)[-1]
    if verb in READ_VERBS:
        return "read"
    return "write" if verb == "write" else "admin"


def schema_text(catalogue: Mapping[str, Integration]) -> str:
    """The Cedar schema (human-readable syntax) for this integration catalogue."""
    lines = [HEAD]
    for name in sorted(catalogue):
        for scope in sorted(catalogue[name].scopes):
            lines.append(
                f'action "{name}:{scope}" in ["{group_of(scope)}"] appliesTo {{\n'
                "  principal: [Agent],\n  resource: [Target],\n  context: RequestContext,\n};"
            )
    return "\n".join(lines) + "\n"


def user_id(user: str) -> str:
    """``user:alice@acme.com`` → ``alice@acme.com`` (the Cedar ``User`` id)."""
    return user.removeprefix("user:")


def _ref(kind: str, ident: str) -> dict[str, Any]:
    return {"__entity": {"type": kind, "id": ident}}


def _entity(kind: str, ident: str, attrs: dict[str, Any]) -> dict[str, Any]:
    return {"uid": {"type": kind, "id": ident}, "attrs": attrs, "parents": []}


def cedar_inputs(
    request: CredentialRequest, scope: str, now: float | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Cedar request and entities for one scope of a credential request."""
    integration = scope.partition(":")[0]
    target = request.target or ""
    user = user_id(request.user)
    resource_id = f"{integration}:{target}"
    owner = _ref("User", user)  # the agent's owner: the daemon's user, until login lands
    entities = [
        _entity("User", user, {}),
        _entity("Agent", request.agent_name, {"name": request.agent_name, "owner": owner}),
        _entity("Target", resource_id, {"integration": integration, "target": target}),
    ]
    cedar_request = {
        "principal": {"type": "Agent", "id": request.agent_name},
        "action": {"type": "Action", "id": scope},
        "resource": {"type": "Target", "id": resource_id},
        "context": {
            "user": _ref("User", user),
            "ttl": request.ttl,
            "interactive": request.interactive,
            "issuer": request.issuer,
            "external_login": request.external_login,
            "time": int(now if now is not None else time.time()),
        },
    }
    return cedar_request, entities
