"""Control-API routes for login sessions and consent grants (mixed into ControlHandler)."""

from __future__ import annotations

from typing import Any, ClassVar

from kontextd.api.httpbase import JsonHandler, Route, route
from kontextd.consent import grants, redeem
from kontextd.core import Core
from kontextd.federation import session as federation
from kontextd.oauth import session

AUTH_ROUTES: list[Route] = [
    route("GET", r"/v1/session", "session_show"),
    route("POST", r"/v1/session/login", "session_login"),
    route("POST", r"/v1/session/logout", "session_logout"),
    route("POST", r"/v1/session/check", "session_check"),
    route("GET", r"/v1/session/federation", "session_federation"),
    route("POST", r"/v1/session/federate", "session_federate"),
    route("GET", r"/v1/consent", "consent_list"),
    route("POST", r"/v1/consent/revoke", "consent_revoke"),
    route("POST", r"/v1/consent/redeem", "consent_redeem"),
]


class AuthRoutes(JsonHandler):
    server: Any
    ROUTES: ClassVar[list[Route]] = []

    @property
    def _auth_core(self) -> Core:
        core: Core = self.server.core
        return core

    def session_show(self) -> None:
        self.send_json(200, federation.show(self._auth_core))

    def session_login(self) -> None:
        self.send_json(200, session.login(self._auth_core, self.read_json()))

    def session_logout(self) -> None:
        self.send_json(200, session.logout(self._auth_core))

    def session_check(self) -> None:
        self.send_json(200, session.check(self._auth_core))

    def session_federation(self) -> None:
        self.send_json(200, federation.settings(self._auth_core))

    def session_federate(self) -> None:
        self.send_json(200, federation.federate(self._auth_core, self.read_json()))

    def consent_list(self) -> None:
        self.send_json(200, grants.listing(self._auth_core))

    def consent_revoke(self) -> None:
        self.send_json(200, grants.revoke_agent(self._auth_core, self.read_json().get("agent")))

    def consent_redeem(self) -> None:
        self.send_json(200, redeem.redeem(self._auth_core, self.read_json()))
