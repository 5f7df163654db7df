"""What an exec'd child receives for each integration of its credential.

``broker``: the integration's token variables hold the kontext token (exec sets
them) and its base-URL variables point at this daemon's gateway, so the child
calls the API through us and never holds the upstream secret.

``token``: the token variables hold the provider's own short-lived access token
(refreshed by the daemon as needed). The credential still went through the
request path and is audited; the provider's token lives until the provider's
expiry — kontext cannot revoke it early — which is why broker is the default
wherever route rules exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kontextd.core import Core
from kontextd.gateway import connections
from kontextd.secrets import SecretsUnavailable


@dataclass
class ChildValues:
    """Variables to set, and which integration variables the kontext token fills."""

    token_env: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    # One line each, for exec to print before the command runs (e.g. not connected).
    warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"ChildValues(token_env={self.token_env!r}, modes={self.modes!r}, values=<redacted>)"


def gateway_url(core: Core, name: str) -> str:
    return f"{core.issuer}/gw/{name}"


def for_child(core: Core, integrations: tuple[str, ...]) -> ChildValues:
    """Compute the child's variables; token mode fetches (or refreshes) the provider token."""
    out = ChildValues()
    for name in integrations:
        integ = core.config.integrations[name]
        mode = integ.mode
        out.modes[name] = mode
        if mode == "token" and integ.credential == "oauth":
            record = connections.stored(core, name)
            if record is None:
                raise connections.NotConnected(name)
            access = connections.access_token(core, integ, record).value
            out.values.update({var: access for var in integ.env})
            continue
        out.token_env.extend(integ.env)
        if mode == "broker" and integ.routes and integ.base_url:
            out.values.update({var: gateway_url(core, name) for var in integ.base_url_env})
            if _surely_unconnected(core, name):  # said now, not at the first call
                out.warnings.append(
                    f"{name} is not connected: its calls through the gateway will fail "
                    f"until you run 'kontext integration connect {name}'"
                )
    return out


def _surely_unconnected(core: Core, name: str) -> bool:
    """No connection is stored for ``name``. Read once per integration, then from
    memory; a keyring that does not answer only loses the warning: exec's credential
    never waits on, or fails for, a fact the gateway checks again at every call."""
    try:
        return connections.stored(core, name) is None
    except SecretsUnavailable:
        return False
