"""The loopback routes public clients (MCP clients) use, with their policies.

- ``POST /register`` (RFC 7591): ``routing.LOOPBACK_CORS`` — any program here, or a
  page served from a loopback origin; a page from elsewhere is refused (Origin).
- ``GET /.well-known/oauth-protected-resource`` and ``…/gw/NAME`` (RFC 9728):
  public documents, CORS.
- ``/authorize`` without a pushed ``request_uri`` and its form's answer are
  dispatched here from ``kontextd.oauth.routes`` (same routes, same page policy:
  only this OS user's connections, CSRF, no framing, no referrer).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from kontextd.api.web import routing
from kontextd.api.web.messages import Request, Response, html_response, json_response
from kontextd.api.web.routing import Route, route
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.oauth import events, pages, public_authorize, public_clients, registration, throttle
from kontextd.oauth.authorize import PageError
from kontextd.oauth.clients import OAuthError
from kontextd.oauth.resource_metadata import WELL_KNOWN, gateway_document
from kontextd.oauth.state import for_core

# A browser says what it loads the page for (W3C Fetch Metadata): the consent page
# of a public client is shown only as a top-level document, never as an <img>,
# <script> or frame a web page pointed at it (each would open a request).
DOCUMENT_DESTS = (None, "document")

# Registration is open to any program here and to pages on loopback origins, and
# each one is an audit line: another OS user or a page may register (or try to)
# at most FOREIGN_LIMIT times per FOREIGN_WINDOW, so none of them can grow the
# audit log faster than a few rows a minute (issue 17 item 6). A real client
# registers once.
FOREIGN = "/register (another user or a page)"
FOREIGN_LIMIT = 10
FOREIGN_WINDOW = 60.0


class PublicClientRoutes:
    """Handlers for public clients' routes, over one ``Core``."""

    def __init__(self, core: Core, malformed: Callable[[ApiError], Response]) -> None:
        self.core = core
        self.malformed = malformed  # the issuer's answer to a request it cannot read

    def routes(self) -> list[Route]:
        return [
            route(
                "POST", r"/register", self.register, routing.LOOPBACK_CORS, errors=self.malformed
            ),
            route(
                "GET",
                rf"{WELL_KNOWN}(?:/gw/([a-z][a-z0-9-]{{0,31}}))?",
                self.resource,
                routing.PUBLIC,
            ),
        ]

    def register(self, request: Request) -> Response:
        who = throttle.who(self.core.trees, request, "/register")
        wait = throttle.retry_after("/register", who)
        if self._foreign(who):
            wait = max(wait, self._foreign_quota(who))
        if wait:
            error = OAuthError(
                "temporarily_unavailable", f"too many registrations; retry in {wait} s", 429
            )
            return json_response(429, error.body(), {"Retry-After": str(wait)})
        try:
            answer = registration.register(
                self.core, request.body, request.headers.get("Content-Type"), request.peer_uid
            )
        except OAuthError as exc:
            who = throttle.who(self.core.trees, request, "/register", failing=True)
            if throttle.failed("/register", who):  # the lock-out, once, as at /token
                events.record(
                    self.core,
                    "oauth.throttled",
                    endpoint="/register",
                    caller=who,
                    limit=throttle.LIMIT,
                    window_seconds=throttle.WINDOW,
                )
            return json_response(exc.status, exc.body())
        return json_response(201, answer)

    @staticmethod
    def _foreign(who: str) -> bool:
        """Another OS user's connection, or a page's (``throttle.caller``'s key)."""
        uid = who.partition("/")[0]
        return uid != f"uid:{os.getuid()}" or who.startswith(f"{uid}/web")

    def _foreign_quota(self, who: str) -> int:
        """Count this attempt against the caller's quota; seconds to wait when spent."""
        wait = throttle.retry_after(FOREIGN, who, limit=FOREIGN_LIMIT, window=FOREIGN_WINDOW)
        if wait:
            return wait
        if throttle.failed(FOREIGN, who, limit=FOREIGN_LIMIT, window=FOREIGN_WINDOW):
            events.record(
                self.core,
                "oauth.throttled",
                endpoint="/register",
                caller=who,
                limit=FOREIGN_LIMIT,
                window_seconds=FOREIGN_WINDOW,
            )
        return 0

    def resource(self, request: Request, name: str | None) -> Response:
        document = gateway_document(self.core, name)
        if document is None:
            return json_response(
                404, {"error": "not_found", "error_description": "no such resource"}
            )
        return json_response(200, document)

    # -- /authorize, dispatched from kontextd.oauth.routes --------------------------

    @staticmethod
    def is_public_request(request: Request) -> bool:
        query = request.query
        return not query.get("request_uri") and public_clients.is_public_id(query.get("client_id"))

    def is_public_decision(self, form: dict[str, str]) -> bool:
        pending = for_core(self.core).pending(form.get("request_uri"))
        return pending is not None and pending.public

    def page(self, request: Request) -> Response:
        if request.headers.get("Sec-Fetch-Dest") not in DOCUMENT_DESTS:
            # Any web page can point an <img> here: audited as the other refusals
            # before a handler are, a few a minute at most (``api.web.refusals``).
            refusals = self.core.gateway.refusals
            if refusals is not None:
                refusals.note(request, "the consent page opens only as a top-level document")
            raise PageError("this page opens only as a page of its own")
        return self._answer(public_authorize.show(self.core, request.query))

    def decision(self, form: dict[str, str]) -> Response:
        return self._answer(public_authorize.decide(self.core, form))

    def _answer(self, answer: public_authorize.Answer) -> Response:
        headers = pages.security_headers(answer.form_target)
        if answer.location is not None:
            return html_response(303, "", {**headers, "Location": answer.location})
        return html_response(answer.status, answer.html, headers)
