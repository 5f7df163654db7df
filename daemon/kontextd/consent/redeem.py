"""``POST /v1/consent/redeem``: the CLI's consent flow turns its approval into a grant.

``kontext consent grant`` (and an interactive ``exec``) runs the authorization
code flow with PKCE for ``agent:NAME`` in the browser, then hands the daemon the
code and its verifier over the control socket (this OS user only). The daemon
checks them exactly as ``/token`` does and records the grant — without minting a
token that nobody would use. (An agent client that redeems its code at ``/token``
gets a credential, minted through the request path: ``grants.from_code``.)
"""

from __future__ import annotations

from typing import Any

from kontext.common import wire
from kontextd.consent import grants
from kontextd.core import Core
from kontextd.errors import ApiError, invalid
from kontextd.oauth import clients, token
from kontextd.oauth.clients import OAuthError

FIELDS = ("code", "code_verifier", "redirect_uri")


def redeem(core: Core, body: dict[str, Any]) -> dict[str, Any]:
    """Check the code for ``agent``, record the grant, answer with it."""
    form = {name: body.get(name) for name in FIELDS}
    if not all(isinstance(v, str) and 0 < len(v) <= 4096 for v in form.values()):
        raise invalid("code, code_verifier and redirect_uri must be non-empty strings")
    raw = body.get("agent")
    if not isinstance(raw, str) or not raw.startswith("agent:"):
        raise invalid("name the agent as agent:NAME")
    try:
        client = clients.resolve(core, raw)
        code = token.redeem_code(core, client.client_id, {k: str(v) for k, v in form.items()})
        recorded = grants.record(core, code)
    except OAuthError as exc:
        raise ApiError(wire.DENIED, f"the approval was refused: {exc.description}") from exc
    return grants.answer(*recorded)
