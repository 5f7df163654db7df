"""One audit event as one line of ``kontext audit tail``: when, what, who, the detail.

``09:32:14 credential.issued  agent:pr-reviewer -> github [acme/backend]``

Every event type has its detail (``DETAILS``); a type this version does not
know still shows its agent or user and its reason. The whole line goes through
``kontext.common.printable`` — event text can come from another OS user, who
needs no token to put bytes into a gateway path — so no field can reach the
terminal as a control sequence. The date is shown when the events printed are
not all from today. Colour only on a terminal (``NO_COLOR`` turns it off,
``FORCE_COLOR`` on, as rich does for the rest of the CLI).

Both roads to ``audit tail`` (the fast path in ``audittail`` and the typer
command) print through ``Lines``, so their bytes agree by construction. Standard
library only: this is on the fast path.
"""

from __future__ import annotations

import os
import time

from kontext.common.printable import printable

TYPE_CHECKING = False  # typing costs ~3-5 ms to import; mypy still reads this block
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

    Event = dict[str, Any]

EVENT_WIDTH = 18
CLOCK = "%H:%M:%S"
DATED = "%Y-%m-%d %H:%M:%S"
# SGR colours (ECMA-48 §8.3.117) by the word after the dot; the clock is dim.
DIM, RESET = "\x1b[2m", "\x1b[0m"
RED, GREEN, YELLOW = "\x1b[31m", "\x1b[32m", "\x1b[33m"
COLOURS = {
    "denied": RED,
    "refused": RED,
    "revoked": RED,
    "killed": RED,
    "code_replayed": RED,
    "refresh_reused": RED,
    "issued": GREEN,
    "granted": GREEN,
    "created": GREEN,
    "connected": GREEN,
    "started": GREEN,
    "expired": YELLOW,
    "ended": YELLOW,
    "disabled": YELLOW,
    "pruned": YELLOW,
}


def colour_wanted(stream: TextIO) -> bool:
    """rich's rule: ``NO_COLOR`` (non-empty) off, ``FORCE_COLOR`` (non-empty) on,
    ``TERM=dumb`` off, else only on a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (ValueError, OSError):
        return False


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _id(value: Any) -> str | None:
    """``agent.id`` / ``user.id`` of an event, which are ``{"id": ...}`` objects."""
    if isinstance(value, dict) and value.get("id") is not None:
        return _text(value["id"])
    return None


def _opt(fmt: str, value: Any) -> list[str]:
    return [] if value in (None, "", []) else [fmt.format(_text(value))]


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _reason(e: Event) -> list[str]:
    return _opt("({})", e.get("reason"))


def _by(e: Event) -> list[str]:
    return _opt("by {}", _id(e.get("user")))


def _agent(e: Event) -> list[str]:
    return _opt("{}", _id(e.get("agent")))


def _credential(e: Event) -> list[str]:
    issued = e.get("event") == "credential.issued"
    return [
        *_agent(e),
        *_opt("-> {}", e.get("integration")),
        *_opt("[{}]", e.get("target")),
        *(_minted(e) if issued else _reason(e)),
    ]


def _minted(e: Event) -> list[str]:
    """Not exec's own lease: what it narrowed to, for how long, and from what."""
    kind = e.get("kind")
    if kind in (None, "exec"):
        return []
    parent = e.get("parent")
    how = f"({_text(kind)} of {_text(parent)})" if parent else f"({_text(kind)})"
    return [
        *_opt("{}", e.get("scopes")),
        *_opt("for {}", e.get("expires_in")),
        *_opt("(asked {})", e.get("ttl_asked")),
        how,
    ]


def _api(e: Event) -> list[str]:
    return [
        *_agent(e),
        *_opt("{}", e.get("method")),
        *_opt("{}", e.get("path")),
        *_opt("{}", e.get("status")),
        *_reason(e),
    ]


def _agent_change(e: Event) -> list[str]:
    return [*_agent(e), *_by(e), *_reason(e)]


def _agent_created(e: Event) -> list[str]:
    return [*_agent(e), *_opt("{}", e.get("scopes")), *_opt("(max ttl {})", e.get("max_ttl"))]


def _agent_revoked(e: Event) -> list[str]:
    return [*_agent(e), *(["--kill"] if e.get("kill") else []), *_by(e), *_reason(e)]


def _killed(e: Event) -> list[str]:
    return [*_agent(e), *_opt("pid {}", e.get("pid")), *_opt("{}", e.get("signal"))]


def _consent(e: Event) -> list[str]:
    grants = e.get("grants")
    count = [f"{len(grants)} grant{'s' if len(grants) != 1 else ''}"] if grants else []
    return [
        *_agent(e),
        *_opt("{}", e.get("scopes")),
        *_opt("[{}]", e.get("target")),
        *_opt("for {}", e.get("expires_in")),
        *count,
        *_by(e),
    ]


def _session(e: Event) -> list[str]:
    user = _id(e.get("user")) if e.get("session_user") is None else e.get("session_user")
    local = ["(local account)"] if e.get("local") else []
    return [*_opt("{}", user), *local, *_opt("via {}", e.get("issuer")), *_reason(e)]


def _oauth(e: Event) -> list[str]:
    return [
        *_opt("client {}", e.get("client_id")),
        *_opt("{} tokens revoked", e.get("tokens_revoked")),
        *_opt("{} grants revoked", e.get("grants_revoked")),
    ]


def _throttled(e: Event) -> list[str]:
    limit, window = e.get("limit"), e.get("window_seconds")
    return [
        *_opt("{}", e.get("endpoint")),
        *_opt("caller {}", e.get("caller")),
        *([f"({limit} failures in {window}s)"] if limit and window else []),
    ]


def _integration(e: Event) -> list[str]:
    return [
        *_opt("{}", e.get("integration")),
        *_opt("({})", e.get("method")),
        *_by(e),
        *_reason(e),
    ]


def _key(e: Event) -> list[str]:
    return [
        *_opt("{}", e.get("kid")),
        *_opt("({})", e.get("alg")),
        *_opt("in {}", e.get("storage")),
        *_retires(e),
        *_by(e),
    ]


def _retires(e: Event) -> list[str]:
    """``retired K1`` (at once), or ``retires K1 at 12:00:00`` (after the grace)."""
    when = e.get("signs_from")
    if not isinstance(when, int | float):
        return _opt("retired {}", e.get("retired"))
    at = time.strftime("at %H:%M:%S", time.localtime(when))
    return [*_opt("retires {}", e.get("retired")), at]


def _recreated(e: Event) -> list[str]:
    gone = _table(e.get("abandoned")).get("event_id")
    return [*_opt("{}", e.get("path")), *_opt("(abandoned a log up to event {})", gone)]


def _config(e: Event) -> list[str]:
    changed = e.get("changed")
    return [
        *_opt("{}", e.get("path")),
        *_opt("changed {}", changed if changed else None),
        *(["no change"] if changed == [] else []),
        *_opt("({})", e.get("trigger")),
    ]


def _policy(e: Event) -> list[str]:
    files, errors = e.get("files") or [], e.get("errors") or []
    return [
        f"{len(files)} file{'s' if len(files) != 1 else ''}",
        *_opt("({})", e.get("trigger")),
        *([f"{len(errors)} errors: {_text(errors[0])}"] if errors else []),
    ]


def _pruned(e: Event) -> list[str]:
    peer = _table(e.get("requested_by"))
    first = e.get("first")
    span = f"{first}-{e.get('through')}" if first is not None else f"through {e.get('through')}"
    return [
        *_opt("events {}", span if e.get("through") is not None else None),
        *_opt("({} removed)", e.get("deleted")),
        *_opt("by pid {}", peer.get("pid")),
        *_opt("uid {}", peer.get("uid")),
        *_opt("agent {}", peer.get("agent")),
    ]


def _pinned(e: Event) -> list[str]:
    return [
        *_opt("key {}", e.get("kids")),
        *_opt("checkpoint at event {}", e.get("event_id")),
        *(["(trusting the log as it stood)"] if e.get("first_use") else []),
        *_opt("in {}", e.get("where")),
    ]


def _daemon(e: Event) -> list[str]:
    return [
        *_opt("pid {}", e.get("pid")),
        *_opt("version {}", e.get("version")),
        *_opt("({} orphaned credentials revoked)", e.get("orphans_revoked") or None),
    ]


def _refused(e: Event) -> list[str]:
    peer = _table(e.get("peer"))
    skipped = e.get("not_recorded_since_last") or None
    return [
        *_opt("uid {}", peer.get("uid")),
        *_opt("pid {}", peer.get("pid")),
        *_opt("{}", e.get("method")),
        *_opt("{}", e.get("path")),
        *_reason(e),
        *_opt("(+{} not recorded)", skipped),
    ]


def _agent_refused(e: Event) -> list[str]:
    return [*_agent(e), *_refused(e)]


def _dashboard(e: Event) -> list[str]:
    return _by(e)


def _mcp_client(e: Event) -> list[str]:
    """consent.denied/expired, oauth.client_*: an MCP client names itself (unverified)."""
    return [
        *_opt("client {}", e.get("client_name") or e.get("client_id")),
        *_opt("{}", e.get("endpoint")),
        *_opt("{}", e.get("scopes")),
        *_opt("-> {}", e.get("resource")),
        *_opt("uid {}", e.get("peer_uid")),
        *_reason(e),
    ]


def _agent_settings(e: Event) -> list[str]:
    bus = e.get("session_bus")
    said = [] if bus is None else [f"session bus {'allowed' if bus else 'hidden'}"]
    return [*_agent(e), *said, *_by(e)]


def _unconfined(e: Event) -> list[str]:
    return [*_agent(e), *_opt("pid {}", e.get("pid")), *_reason(e)]


def _federation(e: Event) -> list[str]:
    return [*_opt("{}", e.get("platform")), *_opt("check {}", e.get("check")), *_reason(e)]


def _other(e: Event) -> list[str]:
    return [*_agent(e), *(_by(e) if not _agent(e) else []), *_reason(e)]


DETAILS: dict[str, Callable[[Event], list[str]]] = {
    "agent.created": _agent_created,
    "agent.enabled": _agent_change,
    "agent.disabled": _agent_change,
    "agent.deleted": _agent_change,
    "agent.revoked": _agent_revoked,
    "agent.changed": _agent_settings,
    "exec.unconfined": _unconfined,
    "credential.issued": _credential,
    "credential.denied": _credential,
    "credential.revoked": _credential,
    "credential.expired": _credential,
    "process.killed": _killed,
    "consent.granted": _consent,
    "consent.revoked": _consent,
    "consent.denied": _mcp_client,
    "consent.expired": _mcp_client,
    "federation.refused": _federation,
    "session.started": _session,
    "session.ended": _session,
    "oauth.code_replayed": _oauth,
    "oauth.refresh_reused": _oauth,
    "oauth.throttled": _throttled,
    "oauth.client_registered": _mcp_client,
    "oauth.client_refused": _mcp_client,
    "integration.connected": _integration,
    "integration.disconnected": _integration,
    "integration.refreshed": _integration,
    "key.created": _key,
    "key.rotated": _key,
    "key.retiring": _key,
    "key.retired": _key,
    "config.reloaded": _config,
    "config.refused": _config,
    "policy.reloaded": _policy,
    "audit.pruned": _pruned,
    "audit.anchor_pinned": _pinned,
    "store.recreated": _recreated,
    "daemon.started": _daemon,
    "daemon.stopped": _daemon,
    "control.refused": _refused,
    "http.refused": _refused,
    "api.call": _api,
    "api.denied": _api,
    "dashboard.opened": _dashboard,
    "dashboard.closed": _dashboard,
    "dashboard.refused": _agent_refused,
}


class Lines:
    """Renders events for one stream: decides colour once, the date per batch (sticky)."""

    def __init__(self, stream: TextIO) -> None:
        self.colour = colour_wanted(stream)
        self.today = time.strftime("%Y-%m-%d")
        self.dated = False

    def batch(self, events: list[Event]) -> list[str]:
        """The lines for ``events``; dated if any of them (or an earlier batch) is not today's."""
        stamp = "%Y-%m-%d"
        self.dated = self.dated or any(
            time.strftime(stamp, time.localtime(e["ts"])) != self.today for e in events
        )
        return [self.line(e) for e in events]

    def line(self, event: Event) -> str:
        """One event's line: escaped, without trailing spaces, coloured if wanted."""
        name = printable(str(event["event"]))
        when = time.strftime(DATED if self.dated else CLOCK, time.localtime(event["ts"]))
        detail = DETAILS.get(name, _other)(event)
        if event.get("via"):  # done through the dashboard, not the CLI
            detail.append(f"via {event['via']}")
        rest = printable(" ".join(str(part) for part in detail))
        if not self.colour:
            return f"{when} {name:<{EVENT_WIDTH}} {rest}".rstrip()
        colour = COLOURS.get(name.partition(".")[2], "")
        padding = " " * max(0, EVENT_WIDTH - len(name))
        shown = f"{colour}{name}{RESET}" if colour else name
        return f"{DIM}{when}{RESET} {shown}{padding} {rest}".rstrip()
