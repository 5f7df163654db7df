"""Resources: what a token is for (RFC 8707), and what the gateway says of itself (RFC 9728).

An MCP client names, with ``resource=``, the absolute URL of the MCP server it
will call (``http://127.0.0.1:8765/mcp``); its token is bound to exactly that
(``aud``), so another server that receives it can tell it was not meant for it.
Only local resources are accepted — a loopback ``http`` URL: kontext is the
authorization server of the MCP servers on this computer.

kontext's own gateway is a protected resource too. Its RFC 9728 metadata
answers at ``/.well-known/oauth-protected-resource`` (the whole gateway: the
issuer's origin) and ``/.well-known/oauth-protected-resource/gw/NAME`` (one
integration; §3.1 inserts the well-known path before the resource's path), and
the gateway's 401 points there (§5.1). A token for the gateway carries the
integrations' names as its audience, as every gateway credential does.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from kontextd.core import Core
from kontextd.oauth.clients import OAuthError

WELL_KNOWN = "/.well-known/oauth-protected-resource"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_RESOURCE = 512


def audience_for(core: Core, resource: str, scopes: tuple[str, ...]) -> tuple[str, ...]:
    """The token audience for ``resource`` (RFC 8707 §2) and the scopes asked for it;
    ``invalid_target`` when it is not a local resource or the scopes do not fit it."""
    parts = _parse(resource)
    integrations = tuple(sorted({s.partition(":")[0] for s in scopes}))
    if parts.port != urllib.parse.urlsplit(core.issuer).port:
        return (resource,)  # another local server: the token is for it alone
    path = parts.path.rstrip("/")
    if path == "":
        return integrations  # the whole gateway
    name = path.removeprefix("/gw/")
    if path.startswith("/gw/") and name in core.config.integrations:
        if integrations != (name,):
            raise OAuthError(
                "invalid_target", f"the resource {resource} takes only {name}:* scopes"
            )
        return (name,)
    raise OAuthError(
        "invalid_target", f"{resource} is no resource of kontext's (try {core.issuer}/gw/NAME)"
    )


def _parse(resource: str) -> urllib.parse.SplitResult:
    try:
        parts = urllib.parse.urlsplit(resource)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or len(resource) > MAX_RESOURCE
        or not resource.isprintable()
        or parts.scheme != "http"
        or parts.hostname not in LOOPBACK
        or port is None
        or parts.username is not None
        or parts.fragment
        or "#" in resource
    ):
        raise OAuthError(
            "invalid_target",
            "resource must be the absolute URL of a local server, http://127.0.0.1:PORT/PATH "
            "(RFC 8707 §2; kontext authorizes MCP servers on this computer)",
        )
    return parts


def gateway_document(core: Core, name: str | None) -> dict[str, Any] | None:
    """RFC 9728 §2 metadata of the whole gateway (``name`` None) or of ``/gw/NAME``;
    None for an integration the gateway does not serve."""
    catalogue = core.config.integrations
    if name is not None:
        integration = catalogue.get(name)
        if integration is None or not integration.routes:
            return None
        served = {name: integration}
    else:
        served = {n: i for n, i in catalogue.items() if i.routes}
    resource = core.issuer if name is None else f"{core.issuer}/gw/{name}"
    return {
        "resource": resource,
        "authorization_servers": [core.issuer],
        "scopes_supported": [f"{n}:{s}" for n, i in served.items() for s in i.scopes],
        "bearer_methods_supported": ["header"],
        "resource_name": "kontext gateway" + (f" for {served[name].display_name}" if name else ""),
    }


def metadata_url(core: Core, name: str) -> str:
    """Where the gateway's 401 for ``/gw/NAME`` points (RFC 9728 §5.1): that
    integration's document, or the whole gateway's for a name it does not serve."""
    if name in core.config.integrations:
        return f"{core.issuer}{WELL_KNOWN}/gw/{name}"
    return f"{core.issuer}{WELL_KNOWN}"
