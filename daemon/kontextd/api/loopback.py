"""Loopback HTTP on 127.0.0.1: what browsers and resource servers need.

RFC 8414 metadata, the JWKS, RFC 7662 introspection, the issuer's routes
(``kontextd.oauth.routes``), the dashboard (``kontextd.dashboard.routes``) and
the API gateway (``/gw/...``), served by
``kontextd.api.web`` (asyncio + llhttp). Each route's security policy — Host
always, Origin, browser fetches, peer uid, CORS — is declared next to it below;
``kontextd.api.web.routing`` says what each policy checks and how to add a route.
"""

from __future__ import annotations

from typing import Any

from kontext.common import wire
from kontextd.api.web import routing
from kontextd.api.web.messages import Request, Response, json_response
from kontextd.api.web.routing import Route, route
from kontextd.api.web.server import HttpServer
from kontextd.core import Core
from kontextd.dashboard.routes import DashboardRoutes
from kontextd.errors import ApiError
from kontextd.gateway import proxy
from kontextd.oauth import introspection
from kontextd.oauth.metadata import metadata as oauth_metadata
from kontextd.oauth.routes import OAuthRoutes, malformed


def metadata(issuer: str, public_clients: bool = True) -> dict[str, Any]:
    """RFC 8414 §2 authorization server metadata (the issuer's, see ``kontextd.oauth``)."""
    return oauth_metadata(issuer, public_clients)


class LoopbackRoutes:
    """The handlers of this module's routes, over one ``Core``."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def metadata(self, request: Request) -> Response:
        return json_response(
            200, metadata(self.core.issuer, self.core.config.mcp_clients == "allow")
        )

    def jwks(self, request: Request) -> Response:
        # RFC 7517 §8.5: application/jwk-set+json.
        return json_response(
            200, self.core.keys.jwks(), {"Content-Type": "application/jwk-set+json"}
        )

    def introspect(self, request: Request) -> Response:
        """RFC 7662 §2: anything we cannot vouch for is just ``{"active": false}``."""
        form = request.form()
        token = form.get("token")
        if token is None:
            raise ApiError(wire.INVALID, "missing token parameter")
        return json_response(200, introspection.introspect(self.core, token))


def routes(core: Core, dashboard: DashboardRoutes) -> list[Route]:
    """Every loopback route, with its policy (``routing.Policy``) and handler kind."""
    here = LoopbackRoutes(core)
    gateway = proxy.Gateway(core)
    return [
        route("GET", r"/\.well-known/oauth-authorization-server", here.metadata, routing.PUBLIC),
        route("GET", r"/jwks\.json", here.jwks, routing.PUBLIC),
        route("POST", r"/introspect", here.introspect, errors=malformed),
        *OAuthRoutes(core).routes(),
        *dashboard.routes(),  # kontextd.dashboard.routes: a session cookie, CSRF on POSTs
        # Any method; no browser, no Origin (a page has no business with an agent's token).
        route(
            None,
            r"/gw/.*",
            gateway.handle,
            routing.NO_BROWSER,
            kind="async",
            streaming=True,
            fast=gateway.relay,
        ),
    ]


class LoopbackServer(HttpServer):
    """127.0.0.1 only; the port is chosen at start and published in the runtime dir."""

    def __init__(self, port: int, core: Core) -> None:
        self.core = core
        self.dashboard = DashboardRoutes(core)
        super().__init__(port, routes(core, self.dashboard), core.store)
        self.dashboard.attach(self)
        core.gateway.refusals = self.refusals
        core.gateway.defer = self.defer

    def agent_at(self, request: Request) -> str | None:
        """The consent page is the user's: a process inside an agent's ``kontext exec``
        tree (confined or not) must not load or answer it — any local program may open
        an MCP client's consent request, for a new agent with any scopes, so an agent
        that could post Approve would leave its delegation. Which process holds the
        connection's other end is a kernel fact (``Trees.holder``; fail closed when a
        tree process hides its files). Audited as ``http.refused``, one a minute per
        agent and route."""
        peer = request.peer
        if peer is None or peer.inode is None:
            return None  # not Linux (SECURITY.md), or the peer is gone
        verdict = peer.verdicts.get("agent", ...)
        if verdict is ...:  # once per connection: its far end stays one socket
            verdict = peer.verdicts["agent"] = self.core.trees.holder(peer.inode)
        if verdict is None:
            return None
        reason = (
            f"refused: this connection comes from inside agent:{verdict.agent} "
            f"(pid {verdict.pid}, {verdict.how}); only you, in your own browser, "
            "may answer this page"
        )
        fields = {
            "reason": reason,
            "method": request.method[:16],
            "path": request.path[:100],
            "peer": verdict.to_json(),
            "agent": {"id": f"agent:{verdict.agent}", "name": verdict.agent},
        }
        self.refusals.record(
            "http.refused", f"{verdict.agent}|{request.path[:100]}", fields, shared=False
        )
        return reason
