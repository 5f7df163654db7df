"""An upstream secret is bound to where it was connected for.

``config.toml`` is a plain file of the user's: anything running as the user can
edit it, and a running daemon applies edits within a second. Were the secret
sent to whatever ``base_url`` now says, an agent could point ``github`` at a
listener of its own on loopback and receive the API key with its next gateway
call. So the connection record remembers the *origin* (scheme, host, port —
RFC 6454 §4) of the integration's ``base_url`` and, for OAuth, of the provider's
token endpoint (which receives the refresh token). A call whose origin differs
is refused with one line naming the command that reconnects — an act of the
user, who must hand over the secret again or consent in the browser. A path
change on the same origin is not a new destination and needs nothing.
"""

from __future__ import annotations

import functools
import urllib.parse
from typing import Any

from kontext.common.integrations import Integration

DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=256)  # a pure function of a URL from the config, asked per call
def origin(url: str | None) -> str | None:
    """``https://API.github.com/x`` -> ``https://api.github.com:443``; None for None."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def bound(integration: Integration) -> dict[str, str | None]:
    """The origins a new connection of ``integration`` is bound to."""
    return {
        "base_url": origin(integration.base_url),
        "token_url": origin(integration.oauth.token_url) if integration.oauth else None,
    }


def changed(integration: Integration, record: dict[str, Any], which: str) -> str | None:
    """Why ``record``'s secret may not go to ``integration``'s ``which`` URL now, or None.

    A record from before bindings existed is treated as bound to nothing: it is
    refused until reconnected (we cannot know where it was meant for)."""
    held = record.get("bound")
    now = bound(integration)[which]
    if not isinstance(held, dict):
        return "was connected before kontext bound secrets to their URL"
    if held.get(which) != now:
        return (
            f"was connected for {held.get(which) or 'no URL'} but its {which} is now "
            f"{now or 'unset'} (config.toml changed); the secret is not sent there"
        )
    return None
