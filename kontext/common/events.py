"""Every audit event name the daemon writes, with what it means.

``kontext audit tail --event NAME`` refuses a name that is not here (a typo
would otherwise print nothing, which reads as "it never happened"), and the
README's list comes from the same table. A new event goes here first:
``tests/test_audit_events.py`` fails when the daemon writes a name this table
does not know.
"""

from __future__ import annotations

from kontext.common.validate import InvalidInput

EVENTS: dict[str, str] = {
    "agent.created": "an agent was registered",
    "agent.enabled": "a disabled agent was enabled again",
    "agent.disabled": "an agent was disabled",
    "agent.revoked": "an agent was revoked (its live credentials end)",
    "agent.deleted": "an agent was deleted",
    "agent.changed": "an agent's settings changed (e.g. its exec may reach the session bus)",
    "credential.issued": "a credential was minted (every layer allowed)",
    "credential.denied": "a credential was refused (the layer and reason)",
    "credential.revoked": "a credential ended before its expiry",
    "credential.expired": "a credential reached its expiry",
    "exec.unconfined": "an exec ran its agent unconfined (--no-confine, or the kernel cannot)",
    "process.killed": "a credential's process was signalled (revoke --kill)",
    "consent.granted": "the user approved an agent's scopes",
    "consent.revoked": "the user withdrew an agent's grants",
    "consent.denied": "the user denied an MCP client's request on the consent page",
    "consent.expired": "an MCP client's consent page, or the code it approved, expired unused",
    "session.started": "a user logged in",
    "federation.refused": "a CI job's OIDC token failed a check (which one; no token kept)",
    "session.ended": "a login session ended (logout, expiry, refusal)",
    "oauth.code_replayed": "an authorization code was used twice (what it issued is revoked)",
    "oauth.refresh_reused": "a rotated refresh token was reused (its family is revoked)",
    "oauth.throttled": "a caller failed too often at an issuer endpoint and is locked out",
    "oauth.client_registered": "an MCP client registered itself (RFC 7591; it can only ask)",
    "oauth.client_refused": "an MCP client's registration or authorization request was refused",
    "integration.connected": "an upstream secret was stored",
    "integration.disconnected": "an upstream secret was forgotten",
    "integration.refreshed": "a provider token was refreshed",
    "key.created": "a signing key was made",
    "key.rotated": "new signing keys were made (they sign now, or after the grace)",
    "key.retiring": "a signing key stopped signing (its private half is deleted next)",
    "key.retired": "a retired signing key's private half was deleted",
    "config.reloaded": "config.toml was applied (the keys that changed)",
    "config.refused": "an invalid config.toml was refused (the old settings stay)",
    "policy.reloaded": "org policy files were (re)loaded",
    "audit.pruned": "old audit events were removed behind a signed anchor",
    "audit.anchor_pinned": "a key (or, first time, the log) was pinned outside the database",
    "store.recreated": "a new empty database replaced a missing one (--new-database)",
    "daemon.started": "kontextd started",
    "daemon.stopped": "kontextd stopped",
    "control.refused": "another OS user was refused on the control socket",
    "http.refused": "a loopback request was refused (Host, Origin)",
    "api.call": "a gateway call was forwarded upstream",
    "api.denied": "a gateway call was refused",
    "dashboard.opened": "a browser opened the dashboard with a one-time link",
    "dashboard.closed": "a dashboard session was signed out",
    "dashboard.refused": "a connection from inside an agent was refused at the dashboard",
}


def check(name: str) -> str:
    """``name`` if it is a known event; else one line with the closest names or the list."""
    if name in EVENTS:
        return name
    import difflib  # only on this error path

    close = difflib.get_close_matches(name, EVENTS, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"the events are {', '.join(sorted(EVENTS))}"
    raise InvalidInput(f"unknown event {name[:60]!r}: {hint}")
