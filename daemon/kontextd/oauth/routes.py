"""The issuer's loopback routes, mixed into ``LoopbackHandler``.

Errors of the JSON endpoints follow RFC 6749 §5.2 (``error``,
``error_description``); ``/authorize`` answers refusals with an error page.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kontextd.api.httpbase import JsonHandler, Route, route
from kontextd.core import Core
from kontextd.oauth import authorize, pages, throttle, token
from kontextd.oauth.clients import OAuthError, authenticate
from kontextd.oauth.state import REQUEST_TTL, for_core

OAUTH_ROUTES: list[Route] = [
    route("GET", r"/\.well-known/openid-configuration", "oidc_metadata"),
    route("POST", r"/par", "par"),
    route("GET", r"/authorize", "authorize_page"),
    route("POST", r"/authorize", "authorize_decision"),
    route("POST", r"/token", "token"),
    route("POST", r"/revoke", "revoke"),
]


def metadata(issuer: str) -> dict[str, Any]:
    """RFC 8414 §2 / OIDC Discovery §3; ``issuer`` is the one exact string used everywhere."""
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "pushed_authorization_request_endpoint": f"{issuer}/par",
        "require_pushed_authorization_requests": True,
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "jwks_uri": f"{issuer}/jwks.json",
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            token.EXCHANGE,
        ],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": list(authorize.LOGIN_SCOPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "name"],
    }


class OAuthRoutes(JsonHandler):
    """Handlers for ``OAUTH_ROUTES``; the server provides ``core``."""

    server: Any
    ROUTES: ClassVar[list[Route]] = []

    @property
    def _core(self) -> Core:
        core: Core = self.server.core
        return core

    def oidc_metadata(self) -> None:
        self.send_json(200, metadata(self._core.issuer))

    def _throttled(self, endpoint: str) -> bool:
        """Answer 429 when ``endpoint`` has seen too many failures lately (``throttle``)."""
        wait = throttle.retry_after(endpoint)
        if wait:
            self._oauth_error(
                OAuthError(
                    "temporarily_unavailable", f"too many failed attempts; retry in {wait} s", 429
                ),
                {"Retry-After": str(wait)},
            )
        return bool(wait)

    def _oauth_error(self, exc: OAuthError, extra: dict[str, str] | None = None) -> None:
        if exc.error in ("invalid_client", "invalid_grant"):
            throttle.failed(self.path.split("?", 1)[0])
        headers = {"WWW-Authenticate": "Basic"} if exc.status == 401 else {}
        headers.update(extra or {})
        self.send_json(
            exc.status, {"error": exc.error, "error_description": exc.description}, headers
        )

    def par(self) -> None:
        """RFC 9126 §2: only an authenticated client (this OS user) may push."""
        form = self.read_form()
        core = self._core
        if self._throttled("/par"):
            return
        try:
            client = authenticate(
                core, for_core(core).secret, self.headers.get("Authorization"), form
            )
            pending = authorize.push(core, client, form)
        except OAuthError as exc:
            self._oauth_error(exc)
            return
        self.send_json(201, {"request_uri": pending.request_uri, "expires_in": REQUEST_TTL})

    def _page(self, status: int, html: str, form_target: str | None = None) -> None:
        self.send_html(status, html, pages.security_headers(form_target))

    def _page_throttled(self) -> bool:
        wait = throttle.retry_after("/authorize")
        if wait:
            self._page(429, pages.error_page(f"Too many failed attempts; retry in {wait} s."))
        return bool(wait)

    def authorize_page(self) -> None:
        if self._page_throttled():
            return
        try:
            html, pending = authorize.show(self._core, self.query)
        except authorize.PageError as exc:
            throttle.failed("/authorize")
            self._page(400, pages.error_page(str(exc)))
            return
        origin = pending.redirect_uri.split("/", 3)
        self._page(200, html, "/".join(origin[:3]))

    def authorize_decision(self) -> None:
        form = self.read_form()
        if self._page_throttled():
            return
        try:
            location = authorize.decide(self._core, form)
        except authorize.PageError as exc:
            throttle.failed("/authorize")
            self._page(400, pages.error_page(str(exc)))
            return
        self.send_html(
            303, "", {**pages.security_headers(), "Location": location, "Content-Length": "0"}
        )

    def token(self) -> None:
        form = self.read_form()
        if self._throttled("/token"):
            return
        try:
            answer = token.handle(self._core, self.headers.get("Authorization"), form)
        except OAuthError as exc:
            self._oauth_error(exc)
            return
        self.send_json(200, answer, {"Pragma": "no-cache"})

    def revoke(self) -> None:
        token.revoke(self._core, self.read_form())
        self.send_json(200, {})
