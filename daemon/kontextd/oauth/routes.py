"""The issuer's loopback routes: metadata, PAR, the login and consent pages, ``/token``.

Errors of the JSON endpoints follow RFC 6749 §5.2 (``error``,
``error_description``) — a malformed request too (``invalid_request``);
``/authorize`` answers refusals with an error page. The pages answer only the OS
user running the daemon (the authorize URL is in the browser's argv, readable by
everyone), and never an agent (``routing.USER_PAGE``/``USER_FORM``: any program
may open an MCP client's request, only the user answers it). Guessable inputs are
throttled per caller (``throttle``), and each lock-out is audited.
"""

from __future__ import annotations

from kontextd.api.web import routing
from kontextd.api.web.messages import Request, Response, html_response, json_response
from kontextd.api.web.routing import Route, route
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.oauth import authorize, pages, public_clients, throttle, token
from kontextd.oauth import events as audit_events
from kontextd.oauth.clients import OAuthError, authenticate
from kontextd.oauth.metadata import metadata
from kontextd.oauth.public_routes import PublicClientRoutes
from kontextd.oauth.state import REQUEST_TTL, for_core


def oauth_error(exc: OAuthError, extra: dict[str, str] | None = None) -> Response:
    """RFC 6749 §5.2; a 401 names the scheme and realm (RFC 9110 §11.6.1)."""
    headers = {"WWW-Authenticate": 'Basic realm="kontext"'} if exc.status == 401 else {}
    headers.update(extra or {})
    return json_response(exc.status, exc.body(), headers)


def malformed(error: ApiError) -> Response:
    """A request the endpoint could not read (RFC 6749 §5.2 ``invalid_request``)."""
    if error.status >= 500:
        return json_response(
            error.status, {"error": "server_error", "error_description": error.message}
        )
    return oauth_error(OAuthError("invalid_request", error.message, error.status))


class OAuthRoutes:
    """Handlers for the issuer's routes, over one ``Core``."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.public = PublicClientRoutes(core, malformed)  # MCP clients

    def routes(self) -> list[Route]:
        # /authorize may fetch a client's metadata document: a blocking route.
        # /token and /revoke take CORS requests from pages on loopback origins
        # (browser-based MCP clients); PAR stays same-origin (the CLI's secret).
        cors = routing.LOOPBACK_CORS
        return [
            route("GET", r"/\.well-known/openid-configuration", self.oidc_metadata, routing.PUBLIC),
            route("POST", r"/par", self.par, errors=malformed),
            route("GET", r"/authorize", self.authorize_page, routing.USER_PAGE, kind="blocking"),
            route("POST", r"/authorize", self.authorize_decision, routing.USER_FORM),
            route("POST", r"/token", self.token, cors, errors=malformed),
            route("POST", r"/revoke", self.revoke, cors, errors=malformed),
            *self.public.routes(),
        ]

    def oidc_metadata(self, request: Request) -> Response:
        return json_response(200, metadata(self.core.issuer, public_clients.enabled(self.core)))

    # -- throttling ---------------------------------------------------------------

    def _who(self, request: Request, endpoint: str, *, failing: bool = False) -> str:
        return throttle.who(self.core.trees, request, endpoint, failing=failing)

    def _failed(self, request: Request, endpoint: str) -> None:
        who = self._who(request, endpoint, failing=True)
        if throttle.failed(endpoint, who):
            audit_events.record(
                self.core,
                "oauth.throttled",
                endpoint=endpoint,
                caller=who,
                limit=throttle.LIMIT,
                window_seconds=throttle.WINDOW,
            )

    def _throttled(self, request: Request, endpoint: str) -> Response | None:
        """429 when this caller has failed too often at ``endpoint`` lately."""
        wait = throttle.retry_after(endpoint, self._who(request, endpoint))
        if not wait:
            return None
        error = OAuthError(
            "temporarily_unavailable", f"too many failed attempts; retry in {wait} s", 429
        )
        return oauth_error(error, {"Retry-After": str(wait)})

    def _refused(self, request: Request, endpoint: str, exc: OAuthError) -> Response:
        if exc.error in ("invalid_client", "invalid_grant"):
            self._failed(request, endpoint)
        return oauth_error(exc)

    # -- endpoints -------------------------------------------------------------------

    def par(self, request: Request) -> Response:
        """RFC 9126 §2: only an authenticated client (this OS user) may push."""
        form = request.form()
        throttled = self._throttled(request, "/par")
        if throttled is not None:
            return throttled
        core = self.core
        try:
            client = authenticate(
                core, for_core(core).secret, request.headers.get("Authorization"), form
            )
            pending = authorize.push(core, client, form)
        except OAuthError as exc:
            return self._refused(request, "/par", exc)
        return json_response(201, {"request_uri": pending.request_uri, "expires_in": REQUEST_TTL})

    def _page(self, status: int, html: str, form_target: str | None = None) -> Response:
        return html_response(status, html, pages.security_headers(form_target))

    def _page_throttled(self, request: Request) -> Response | None:
        wait = throttle.retry_after("/authorize", self._who(request, "/authorize"))
        if wait:
            return self._page(
                429, pages.error_page(f"Too many failed attempts; retry in {wait} s.")
            )
        return None

    def authorize_page(self, request: Request) -> Response:
        throttled = self._page_throttled(request)
        if throttled is not None:
            return throttled
        try:
            if self.public.is_public_request(request):
                return self.public.page(request)
            html, pending = authorize.show(self.core, request.query)
        except authorize.PageError as exc:
            self._failed(request, "/authorize")
            return self._page(400, pages.error_page(str(exc)))
        origin = pending.redirect_uri.split("/", 3)
        return self._page(200, html, "/".join(origin[:3]))

    def authorize_decision(self, request: Request) -> Response:
        form = request.form()
        throttled = self._page_throttled(request)
        if throttled is not None:
            return throttled
        try:
            if self.public.is_public_decision(form):
                return self.public.decision(form)
            location = authorize.decide(self.core, form)
        except authorize.PageError as exc:
            self._failed(request, "/authorize")
            return self._page(400, pages.error_page(str(exc)))
        return html_response(303, "", {**pages.security_headers(), "Location": location})

    def token(self, request: Request) -> Response:
        form = request.form()
        throttled = self._throttled(request, "/token")
        if throttled is not None:
            return throttled
        try:
            answer = token.handle(self.core, request.headers.get("Authorization"), form)
        except OAuthError as exc:
            return self._refused(request, "/token", exc)
        return json_response(200, answer, {"Pragma": "no-cache"})

    def revoke(self, request: Request) -> Response:
        form = request.form()
        if not form.get("token"):
            # RFC 7009 §2.1: token is REQUIRED; a request without one is malformed
            # (§2.2.1, RFC 6749 §5.2). Only an unknown or invalid token is a 200.
            missing = OAuthError("invalid_request", "send the token to revoke as 'token'")
            return json_response(missing.status, missing.body())
        token.revoke(self.core, form)
        return json_response(200, {})
