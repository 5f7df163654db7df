"""The control-API side of integrations: list, connect (API key or OAuth), disconnect."""

from __future__ import annotations

from typing import Any

from kontext.common.integrations import Integration
from kontextd import settings
from kontextd.core import Core
from kontextd.errors import invalid, not_found
from kontextd.gateway import connections, provider_oauth, verify

REFUSED = (
    "; kontextd refused config.toml's last edit and runs the settings before it "
    "(see 'kontext doctor')"
)


def get(core: Core, name: str) -> Integration:
    integration = core.config.integrations.get(name)
    if integration is None:
        known = ", ".join(sorted(core.config.integrations))
        # An integration just added by hand is missing while the file's edit is refused.
        refused = REFUSED if settings.status(core)["error"] else ""
        raise not_found(f"no integration {name!r} (known: {known}){refused}")
    return integration


def listing(core: Core) -> dict[str, Any]:
    return {"integrations": connections.listing(core)}


def connect_secret(core: Core, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Store an API key sent over the control socket (read from the CLI's stdin)."""
    integration = get(core, name)
    secret = body.get("secret")
    if not isinstance(secret, str) or not secret:
        raise invalid("the secret is empty")
    if not connections.header_safe(secret):
        raise invalid(
            f"the secret must be 1-{connections.MAX_SECRET} visible ASCII characters "
            "(no spaces or control characters)"
        )
    check = body.get("verify", True)
    if not isinstance(check, bool):
        raise invalid("verify must be true or false")
    # Asked of the upstream before anything is stored (--no-verify skips it).
    identity = verify.check(integration, secret) if check else None
    connections.save(core, integration, {"kind": "api_key", "secret": secret}, "api_key")
    return {
        "integration": integration.name,
        "connected": True,
        "method": "api_key",
        "verified": bool(check and integration.verify and integration.base_url),
        "verify": integration.verify,
        "identity": identity,
    }


def oauth_start(core: Core, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return provider_oauth.start(core, get(core, name), body.get("redirect_uri"))


def oauth_finish(core: Core, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return provider_oauth.finish(core, get(core, name), body)


def disconnect(core: Core, name: str) -> dict[str, Any]:
    integration = get(core, name)
    had = connections.disconnect(core, integration.name, f"disconnected by {core.user}")
    return {"integration": integration.name, "disconnected": had}
