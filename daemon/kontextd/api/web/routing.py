"""Routes and their security policy, checked before any handler runs.

Every route names a ``Policy``. The server applies, in order:

1. ``Host`` must be one of our loopback names with our port, on every route
   (DNS rebinding: a page on ``evil.example`` resolving to 127.0.0.1 sends its
   own name) — 421, and the connection ends;
2. ``Origin``: ``same`` (the default) refuses a state-changing request (not GET,
   HEAD or OPTIONS) from any origin but ours; ``loopback`` also lets a page served
   from another loopback port make one (a browser-based MCP client on this
   computer, e.g. ``http://localhost:6274``), never a page from elsewhere;
   ``refuse`` refuses any request that carries one; ``any`` leaves it to the route
   (CORS routes) — 403;
3. ``browser=False`` refuses what a browser sends for a navigation or a
   subresource (``Sec-Fetch-Mode`` navigate/no-cors, ``Sec-Fetch-Dest`` other than
   empty) — an ``<img src>`` on any web page can reach the loopback port;
4. ``same_uid=True``: only the OS user running the daemon may be at the other end
   of the TCP connection (``kontext.common.peeruid``; pages a stranger must not
   answer);
   ``user_only=True`` also refuses a connection whose other end a process inside
   an agent's ``kontext exec`` tree holds (``HttpServer.agent_at``: pages only the
   user, never an agent, may answer — the consent page);
5. ``cors=True`` answers CORS preflights and adds ``Access-Control-Allow-Origin: *``
   (public metadata; never on a route that takes a cookie).

Handlers come in three kinds (``Route.kind``): ``inline`` (a plain function, run
on the event loop inside one store batch with the other requests ready in the same
loop iteration — fast, pure, SQLite-only work), ``blocking`` (a plain function
that may wait on the keyring or the network, run on the server's small executor)
and ``async`` (a coroutine; ``streaming=True`` also gets the body as it arrives, in
``request.chunks``; only when the request announced a body). A route may also have
a ``fast`` function, tried first on the loop: it may take the request and answer it
through the connection from callbacks, with no task (the gateway's ``relay``), or
return False to leave it to the handler. To add a route: write the handler, pick a
policy, append a ``Route`` to the list ``loopback.routes`` builds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kontext.common import wire
from kontextd.api.web.messages import Request
from kontextd.errors import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class Policy:
    """What a route accepts beyond the Host check (which every route has)."""

    origin: Literal["same", "loopback", "refuse", "any"] = "same"
    browser: bool = True
    same_uid: bool = False
    cors: bool = False
    # Our pages send ``Referrer-Policy: no-referrer``, so a browser posts their forms
    # with ``Origin: null`` (Fetch §3.2.5): accept that only when the browser says the
    # post came from our own origin (``Sec-Fetch-Site: same-origin``).
    null_origin_form: bool = False
    user_only: bool = False  # not an agent either (step 4)


API = Policy()
PAGE = Policy(same_uid=True)
FORM = Policy(same_uid=True, null_origin_form=True)
USER_PAGE = Policy(same_uid=True, user_only=True)
USER_FORM = Policy(same_uid=True, null_origin_form=True, user_only=True)
NO_BROWSER = Policy(origin="refuse", browser=False)
# Public documents (RFC 8414, RFC 9728, the JWKS): any page may read them (CORS).
PUBLIC = Policy(cors=True)
# What a browser-based MCP client on this computer posts to (RFC 7591 registration,
# /token, /revoke): CORS, and an Origin on loopback. Never a route that reads a cookie.
LOOPBACK_CORS = Policy(origin="loopback", cors=True)


@dataclass(frozen=True)
class Route:
    """``methods`` None means any method; ``pattern`` must match the whole path."""

    methods: frozenset[str] | None
    pattern: re.Pattern[str]
    handler: Callable[..., Any]
    policy: Policy = API
    kind: Literal["inline", "blocking", "async"] = "inline"
    streaming: bool = False
    errors: Callable[[ApiError], Any] | None = None  # the route's own error body
    fast: Callable[[Any, Request], bool] | None = None  # (connection, request) -> taken?


def route(
    methods: str | None,
    pattern: str,
    handler: Callable[..., Any],
    policy: Policy = API,
    *,
    kind: Literal["inline", "blocking", "async"] = "inline",
    streaming: bool = False,
    errors: Callable[[ApiError], Any] | None = None,
    fast: Callable[[Any, Request], bool] | None = None,
) -> Route:
    """A ``Route``; ``methods`` is space-separated (``"GET HEAD"``), None for any."""
    allowed = frozenset(methods.split()) if methods else None
    return Route(allowed, re.compile(pattern), handler, policy, kind, streaming, errors, fast)


class Router:
    """Finds the route for a request, or says 404 / 405."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        # Each pattern's literal beginning: a path that does not start with it cannot
        # match, and ``startswith`` costs a tenth of a ``fullmatch``.
        self._prefixes = [(literal_prefix(r.pattern.pattern), r) for r in routes]

    def find(self, method: str, path: str) -> tuple[Route, tuple[str, ...]]:
        allowed = False
        for prefix, candidate in self._prefixes:
            if not path.startswith(prefix):
                continue
            match = candidate.pattern.fullmatch(path)
            if match is None:
                continue
            allowed = True
            if candidate.methods is None or method in candidate.methods:
                return candidate, match.groups()
            if method == "OPTIONS" and candidate.policy.cors:
                return candidate, match.groups()
        if allowed:
            raise ApiError(wire.NOT_ALLOWED, f"{method[:16]} is not allowed on {path[:80]}")
        raise ApiError(wire.NOT_FOUND, f"no such endpoint: {path[:80]}")


_SPECIAL = frozenset(".^$*+?{}[]|()\\")
_QUANTIFIERS = frozenset("*+?{")


def literal_prefix(pattern: str) -> str:
    """The characters every match of ``pattern`` starts with: its leading literals
    (``\\.`` is a dot), up to the first special character; a literal a quantifier
    follows (``ab?``) may be absent, so it is left out."""
    if "|" in pattern:
        return ""  # an alternative may begin otherwise (``/a|/b``)
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if not escaped or escaped.isalnum():
                break  # \d, \w, \A ...: a class or an assertion, not a literal
            char, step = escaped, 2
        elif char in _SPECIAL:
            break
        else:
            step = 1
        if pattern[i + step : i + step + 1] in _QUANTIFIERS and pattern[i + step : i + step + 1]:
            break
        out.append(char)
        i += step
    return "".join(out)


def allowed_hosts(port: int) -> frozenset[str]:
    return frozenset(f"{name}:{port}" for name in LOOPBACK_NAMES)


def check(policy: Policy, request: Request, port: int, own_uid: int | None) -> str | None:
    """Why ``request`` is refused under ``policy`` (steps 2-4 above), or None."""
    headers = request.headers
    origin = headers.get("Origin")
    if origin is not None:
        if policy.origin == "refuse":
            return "cross-origin request refused"
        if policy.origin in ("same", "loopback") and request.method not in SAFE_METHODS:
            own = {f"http://{h}" for h in allowed_hosts(port)}
            if policy.origin == "loopback" and _loopback_origin(origin):
                pass
            elif origin not in own and not _own_form_post(policy, origin, request):
                return "cross-origin request refused"
    if not policy.browser and _from_browser(request):
        return "browser navigation or subresource refused"
    if policy.same_uid and own_uid is not None and request.peer_uid != own_uid:
        return "another OS user's connection refused"
    return None


def _loopback_origin(origin: str) -> bool:
    """``http://127.0.0.1:PORT``, ``http://localhost:PORT`` or ``http://[::1]:PORT``."""
    scheme, _, rest = origin.partition("://")
    host, colon, port = rest.rpartition(":")
    return scheme == "http" and bool(colon) and port.isdigit() and host in LOOPBACK_NAMES


def _own_form_post(policy: Policy, origin: str, request: Request) -> bool:
    return (
        policy.null_origin_form
        and origin == "null"
        and request.headers.get("Sec-Fetch-Site") == "same-origin"
    )


def _from_browser(request: Request) -> bool:
    """Fetch metadata (W3C Fetch Metadata §2): only browsers send these."""
    mode = request.headers.get("Sec-Fetch-Mode")
    dest = request.headers.get("Sec-Fetch-Dest")
    return mode in ("navigate", "nested-navigate", "no-cors") or dest not in (None, "empty")
