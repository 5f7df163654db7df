"""Loopback HTTP on 127.0.0.1: what browsers and resource servers need.

RFC 8414 metadata, the JWKS and RFC 7662 introspection. Every request's
``Host`` must be a loopback name with our port, else 421 — a DNS-rebinding page
(``evil.example`` resolving to 127.0.0.1) sends its own name as Host. A POST
carrying an ``Origin`` must carry ours.
"""

from __future__ import annotations

import logging
import socketserver
import threading
import time
from http.server import HTTPServer
from typing import Any, ClassVar

from kontext.common import wire
from kontextd.api.httpbase import Route, route
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.gateway import proxy
from kontextd.oauth.routes import OAUTH_ROUTES, OAuthRoutes
from kontextd.oauth.routes import metadata as oauth_metadata
from kontextd.store.db import StoreError
from kontextd.tokens import verify

log = logging.getLogger("kontextd.loopback")

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
MAX_CONNECTIONS = 512
ACCEPT_PAUSE = 0.1  # seconds the accepting thread waits after accept() failed (EMFILE)
REFUSAL_AUDIT_INTERVAL = 60.0


class LoopbackHandler(OAuthRoutes):
    """Routes served on the loopback port."""

    server: LoopbackServer
    # Headers and body go out in two writes; with Nagle on, every request after the
    # first on a kept-alive connection waited ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    ROUTES: ClassVar[list[Route]] = [
        route("GET", r"/\.well-known/oauth-authorization-server", "metadata"),
        route("GET", r"/jwks\.json", "jwks"),
        route("POST", r"/introspect", "introspect"),
        *OAUTH_ROUTES,
    ]

    def address_string(self) -> str:
        return str(self.client_address[0])

    def _dispatch(self) -> None:
        """``/gw/<integration>/...`` is the API gateway (any method); the rest is routed."""
        if not self.path.startswith(proxy.PREFIX):
            super()._dispatch()
            return
        refusal = self.precheck()  # Host (DNS rebinding) first, as for every route
        if refusal is not None:
            self.send_error_json(refusal)
            return
        try:
            proxy.handle(self)
        except Exception:
            log.exception("gateway error on %s", self.command)
            self.close_connection = True

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        if not self.path.startswith(proxy.PREFIX):
            self.close_connection = True  # our JSON routes have no HEAD; the error has a body
        self._dispatch()

    def precheck(self) -> ApiError | None:
        port = self.server.server_address[1]
        allowed = {f"{name}:{port}" for name in LOOPBACK_NAMES}
        host = self.headers.get("Host", "")
        if host.lower() not in allowed:
            self.server.audit_refusal(self, "Host is not our loopback address (DNS rebinding?)")
            return ApiError(wire.MISDIRECTED, "this server answers only to its loopback address")
        origin = self.headers.get("Origin")
        if (
            self.command == "POST"
            and origin is not None
            and origin not in {f"http://{h}" for h in allowed}
            and not self._own_form_post(origin)
        ):
            self.server.audit_refusal(self, "cross-origin request refused")
            return ApiError(wire.FORBIDDEN, "cross-origin request refused")
        return None

    def _own_form_post(self, origin: str) -> bool:
        """Our pages send ``Referrer-Policy: no-referrer``, so a browser posts their
        forms with ``Origin: null`` (Fetch §3.2.5). Accept that only for the decision
        form, only when the browser says the post came from our own origin; its CSRF
        token is checked as well."""
        return (
            origin == "null"
            and self.path.partition("?")[0] == "/authorize"
            and self.headers.get("Sec-Fetch-Site") == "same-origin"
        )

    def metadata(self) -> None:
        self.send_json(200, metadata(self.server.core.issuer))

    def jwks(self) -> None:
        # RFC 7517 §8.5: application/jwk-set+json.
        self.send_json(
            200, self.server.core.keys.jwks(), {"Content-Type": "application/jwk-set+json"}
        )

    def introspect(self) -> None:
        """RFC 7662 §2: anything we cannot vouch for is just ``{"active": false}``."""
        form = self.read_form()
        token = form.get("token")
        if token is None:
            raise ApiError(wire.INVALID, "missing token parameter")
        core = self.server.core
        claims = verify.inspect(token, keys=core.keys, store=core.store, issuer=core.issuer)
        if claims is None:
            self.send_json(200, {"active": False})
            return
        self.send_json(200, {"active": True, "token_type": "Bearer", **claims})


def metadata(issuer: str) -> dict[str, Any]:
    """RFC 8414 §2 authorization server metadata (the issuer's, see ``kontextd.oauth``)."""
    return oauth_metadata(issuer)


class LoopbackServer(socketserver.ThreadingMixIn, HTTPServer):
    """127.0.0.1 only; the port is chosen at start and published in the runtime dir."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, port: int, core: Core) -> None:
        self.core = core
        self._open = 0
        self._open_lock = threading.Lock()
        self._refusals: dict[str, tuple[float, int]] = {}
        super().__init__(("127.0.0.1", port), LoopbackHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """At most ``MAX_CONNECTIONS`` at once: any local user can open this port, and
        its connections share the daemon's open files with the control socket."""
        with self._open_lock:
            if self._open >= MAX_CONNECTIONS:
                return False  # socketserver closes it
            self._open += 1
            return True

    def audit_refusal(self, handler: LoopbackHandler, reason: str) -> None:
        """An ``http.refused`` event, at most one per reason a minute (with how many
        were left out): any web page can send these, and must not flood the log."""
        now = time.monotonic()
        with self._open_lock:
            last, skipped = self._refusals.get(reason, (-REFUSAL_AUDIT_INTERVAL, 0))
            if now - last < REFUSAL_AUDIT_INTERVAL:
                self._refusals[reason] = (last, skipped + 1)
                return
            self._refusals[reason] = (now, 0)
        event = {
            "event": "http.refused",
            "reason": reason,
            "method": str(handler.command)[:16],
            "path": handler.path.split("?", 1)[0][:100],
            "not_recorded_since_last": skipped,
        }
        try:
            with self.core.store.transaction() as tx:
                tx.append_event(event)
        except StoreError:  # the refusal stands; the log says why it is not in the audit
            log.warning("could not audit a refused request: the database cannot be written")

    def get_request(self) -> tuple[Any, Any]:
        """accept(); when it fails (EMFILE), wait a moment before the next try: the
        connection stays in the backlog, so the listener stays readable and
        ``serve_forever`` would otherwise spin on it. Only this thread accepts."""
        try:
            return super().get_request()
        except OSError as exc:
            log.warning("accept failed (%s); accepting again in %.1f s", exc, ACCEPT_PAUSE)
            time.sleep(ACCEPT_PAUSE)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints tracebacks to stderr; ours go to the log."""
        log.exception("loopback connection failed")

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]
