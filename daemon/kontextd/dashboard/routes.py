"""The dashboard's loopback routes, and the checks every one of them makes.

Before any handler: ``routing.PAGE`` — ``Host`` is ours (DNS rebinding), a
state-changing request from another ``Origin`` is refused, and the TCP peer must be
the OS user running the daemon (``kontext.common.peeruid``). Then, here:

- the connection's far end is not held inside an agent's ``kontext exec`` tree
  (``Trees.holder``, asked once per connection): an agent that read the link from
  the browser's argv, or stole the cookie, gets nothing, and the link stays unspent;
- a session cookie (``access``) on everything but ``/dashboard/open`` and the
  static files; without one a page says how to get in, the API answers 401;
- Fetch Metadata (W3C): only our own pages may call the API, the stream and the
  static files (``Sec-Fetch-Site: same-origin``), and only as fetches, never as an
  ``<img>``/``<script>`` of another page (``Sec-Fetch-Dest: empty``); a page is a
  navigation the user made (``none``) or one of ours made;
- every POST carries the session's CSRF token in ``X-Kontext-CSRF`` and a JSON body
  (so a cross-site form cannot even be sent without a CORS preflight we never allow);
- every answer: a strict CSP, no framing, ``no-store``, CORP/COOP ``same-origin``.

A refusal is audited (rate-limited ``http.refused``) and changes nothing.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import threading
import time
from typing import TYPE_CHECKING, Any

from kontext.common import wire
from kontextd.api.web import routing
from kontextd.api.web.messages import (
    Request,
    Response,
    Stream,
    html_response,
    json_body,
    json_response,
)
from kontextd.api.web.routing import Route, route
from kontextd.audit.context import via
from kontextd.core import Core
from kontextd.dashboard import access, actions, pages, selection, views
from kontextd.dashboard.activity import Activity
from kontextd.dashboard.stream import Hub
from kontextd.dashboard.verify import Verifier
from kontextd.errors import ApiError, invalid

if TYPE_CHECKING:
    from kontextd.api.web.server import HttpServer

CSRF_HEADER = "X-Kontext-CSRF"
OVERVIEW_FRESH = 1.0  # seconds an Overview answer is shared by the pages that ask
N = r"([a-z0-9][a-z0-9-]{0,62})"
VIEWS = "overview|credentials|grants|integrations|policy|filters"
SECTIONS = "|".join(p.path.removeprefix("/dashboard/") for p in pages.PAGES)
STATIC_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
NO_SESSION = (
    "Open the dashboard",
    "This browser has no dashboard session (it ended, or the daemon restarted).",
    "Run 'kontext dashboard' in a terminal: it opens the dashboard with a one-time link.",
)
SPENT_LINK = (
    "This link cannot be used",
    "A dashboard link opens the dashboard once, within two minutes; this one was "
    "already used, has expired, or was never handed out.",
    "Run 'kontext dashboard' again for a new link.",
)


class Refused(ApiError):
    """A dashboard refusal: 401 without a session, 403 for anything else."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(wire.FORBIDDEN, message)
        self._status = status

    @property
    def status(self) -> int:
        return self._status


class DashboardRoutes:
    """Handlers for ``/dashboard/...`` over one ``Core``; ``attach`` binds the server."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.access = core.dashboard
        self.port = 0
        self.server: HttpServer | None = None
        self.hub = Hub(core.store.path, self._feed)
        self.verifier = Verifier(core)
        self.activity = Activity()  # the Overview's last hour, shared by every dashboard
        self._overview_lock = threading.Lock()
        self._overview_cache: tuple[float, bytes | None] = (0.0, None)
        self._static: dict[str, tuple[bytes, str]] | None = None

    def attach(self, server: HttpServer) -> None:
        self.server = server
        self.port = server.port

    def _feed(self) -> Any:
        assert self.server is not None
        return self.server.feed

    def routes(self) -> list[Route]:
        page, page_errors = routing.PAGE, self._page_error
        return [
            route("GET", r"/dashboard/open", self.open, page, errors=page_errors,
                  kind="blocking"),
            route("GET", r"/dashboard", self.to_overview, page, errors=page_errors),
            route("GET", rf"/dashboard/({SECTIONS})", self.page, page, errors=page_errors,
                  kind="blocking"),
            route("GET", r"/dashboard/static/([a-z]{1,20}\.(?:js|css|svg))", self.static, page),
            route("GET", rf"/dashboard/api/({VIEWS})", self.data, page, kind="blocking"),
            route("GET", rf"/dashboard/api/agents/{N}/consequences", self.consequences, page,
                  kind="blocking"),
            route("GET", r"/dashboard/api/verify", self.verify, page, kind="async"),
            route("GET", r"/dashboard/api/events", self.events, page, kind="async"),
            route("POST", r"/dashboard/api/(revoke-credential|revoke-agent|revoke-grant|explain)",
                  self.act, page, kind="blocking"),
            route("POST", r"/dashboard/api/sign-out", self.sign_out, page, kind="async"),
        ]  # fmt: skip

    # -- the checks -----------------------------------------------------------------

    def _refuse(self, request: Request, status: int, reason: str) -> ApiError:
        if self.server is not None:
            self.server.refusals.note(request, f"dashboard: {reason}")
        return Refused(status, reason)

    def _not_an_agent(self, request: Request) -> None:
        """Refuse a connection whose far end is held inside an agent's ``kontext exec``
        tree (kernel facts: the peer socket's inode in a tree process's open files). The
        link is in the browser's argv, which every process of the user can read, and a
        session cookie rests in the browser's profile: an agent must not use either."""
        peer = request.peer
        if peer is None or peer.inode is None:
            return  # not Linux (SECURITY.md), or the peer is gone (same_uid refused it)
        verdict = peer.verdicts.get("agent", ...)
        if verdict is ...:  # asked once per connection: its far end stays one socket
            verdict = peer.verdicts["agent"] = self.core.trees.holder(peer.inode)
        if verdict is None:
            return
        reason = (
            f"refused: this connection comes from inside agent:{verdict.agent} "
            f"(pid {verdict.pid}, {verdict.how}); an agent cannot use the dashboard"
        )
        if self.server is not None:
            fields = {
                "reason": reason,
                "method": request.method[:16],
                "path": request.path[:100],
                "peer": verdict.to_json(),
                "agent": {"id": f"agent:{verdict.agent}", "name": verdict.agent},
            }
            refusals = self.server.refusals
            refusals.record("dashboard.refused", str(verdict.agent), fields, shared=False)
        raise Refused(403, reason)

    async def _screen(self, request: Request) -> None:
        """``_not_an_agent`` for a handler on the event loop: the look through ``/proc``
        (milliseconds) runs on the executor, and only while some exec tree is live."""
        peer = request.peer
        if peer is not None and "agent" not in peer.verdicts and self.core.trees.live():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._not_an_agent, request)
        self._not_an_agent(request)

    def _fetch_site(self, request: Request, *allowed: str) -> None:
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in allowed:
            raise self._refuse(request, 403, f"a {site} request is refused")

    def _session(self, request: Request) -> access.Session | None:
        return self.access.session(read_cookie(request, self.port))

    def _api(self, request: Request) -> access.Session:
        """An API call from one of our pages, with a live session."""
        self._not_an_agent(request)
        self._fetch_site(request, "same-origin")
        dest = request.headers.get("Sec-Fetch-Dest")
        if dest not in (None, "empty"):
            raise self._refuse(request, 403, f"the API is not a {dest[:20]}")
        session = self._session(request)
        if session is None:
            raise self._refuse(request, 401, "no dashboard session: run 'kontext dashboard'")
        return session

    def _post(self, request: Request) -> tuple[access.Session, dict[str, Any]]:
        """A state-changing call: also the CSRF token and a JSON body."""
        session = self._api(request)
        if not session.csrf_ok(request.headers.get(CSRF_HEADER)):
            raise self._refuse(request, 403, "missing or wrong CSRF token")
        if not (request.headers.get("Content-Type") or "").startswith("application/json"):
            raise invalid("send application/json")
        return session, json_body(request.read())

    # -- answers --------------------------------------------------------------------

    def _json(self, status: int, body: Any) -> Response:
        return json_response(status, body, pages.security_headers("application/json"))

    def _html(self, status: int, html: str, **extra: str) -> Response:
        return html_response(status, html, {**pages.security_headers(), **extra})

    def _page_error(self, error: ApiError) -> Response:
        if error.status == 401:
            return self._html(401, pages.message_page(*NO_SESSION))
        return self._html(error.status, pages.message_page("Refused", error.message, ""))

    # -- pages ----------------------------------------------------------------------

    def open(self, request: Request) -> Response:
        """``/dashboard/open?t=LINK``: spend the one-time link, set the session cookie."""
        self._fetch_site(request, "none", "same-origin")
        self._not_an_agent(request)  # before the link is spent: the user's browser still can
        opened = self.access.redeem(request.query.get("t"))
        if opened is None:
            self._refuse(request, 403, "a spent, expired or unknown dashboard link")
            return self._html(403, pages.message_page(*SPENT_LINK))
        cookie, _ = opened
        with via(actions.VIA), self.core.store.transaction() as tx:
            tx.append_event({"event": "dashboard.opened", "user": self.core.user_ref()})
        return self._html(
            303,
            "",
            Location="/dashboard/",
            **{"Set-Cookie": access.set_cookie(self.port, cookie)},
        )

    def to_overview(self, request: Request) -> Response:
        return self._html(308, "", Location="/dashboard/")

    def page(self, request: Request, section: str) -> Response:
        self._fetch_site(request, "none", "same-origin")
        self._not_an_agent(request)
        session = self._session(request)
        if session is None:
            return self._html(401, pages.message_page(*NO_SESSION))
        found = pages.BY_PATH[f"/dashboard/{section}"]
        return self._html(200, pages.shell(found, session.csrf, self.core.user))

    def static(self, request: Request, name: str) -> Response:
        """The page's scripts and stylesheet, from the package (no session needed: they
        are the same in every install and hold no data)."""
        self._fetch_site(request, "same-origin")
        files = self._files()
        if name not in files:
            raise ApiError(wire.NOT_FOUND, f"no such file: {name}")
        body, kind = files[name]
        return Response(200, body, pages.security_headers(kind))

    def _files(self) -> dict[str, tuple[bytes, str]]:
        if self._static is None:
            folder = importlib.resources.files("kontextd.dashboard") / "static"
            self._static = {
                item.name: (item.read_bytes(), STATIC_TYPES[item.name.rpartition(".")[2]])
                for item in folder.iterdir()
                if item.name.rpartition(".")[2] in STATIC_TYPES
            }
        return self._static

    # -- data -----------------------------------------------------------------------

    def data(self, request: Request, name: str) -> Response:
        self._api(request)
        if name == "overview":
            return self._overview()
        view = {
            "credentials": views.credentials,
            "grants": views.grants,
            "integrations": views.integrations,
            "policy": views.policy,
            "filters": views.filters,
        }[name]
        return self._json(200, view(self.core))

    def _overview(self) -> Response:
        """The Overview, computed and encoded at most once a second however many pages
        reload it (each reload is a page's answer to a pulse)."""
        with self._overview_lock:
            made, body = self._overview_cache
            if body is None or time.monotonic() - made >= OVERVIEW_FRESH:
                answer = self._json(200, views.overview(self.core, self.activity))
                body = answer.body
                self._overview_cache = (time.monotonic(), body)
        return Response(200, body, pages.security_headers("application/json"))

    def consequences(self, request: Request, name: str) -> Response:
        self._api(request)
        return self._json(200, actions.consequences(self.core, name))

    async def verify(self, request: Request) -> Response:
        await self._screen(request)
        self._api(request)
        return self._json(200, await self.verifier.result())

    async def events(self, request: Request) -> Stream:
        """The live audit stream (SSE); ``Last-Event-ID`` resumes after a reconnect;
        ``mode=pulse`` sends only a count of what changed per batch."""
        await self._screen(request)
        session = self._api(request)
        query = request.query
        chosen = selection.parse(query)
        mode = query.get("mode", "events")
        if mode not in ("events", "pulse"):
            raise invalid("mode must be events or pulse")
        raw = query.get("history", "100")
        if not raw.isdigit() or int(raw) > 1000:
            raise invalid("history must be a number of events, at most 1000")
        last = request.headers.get("Last-Event-ID")
        resume = int(last) if last is not None and last.isdigit() and len(last) < 19 else None
        return self.hub.stream(chosen, int(raw), resume, pulse=mode == "pulse", owner=session.key)

    # -- actions --------------------------------------------------------------------

    def act(self, request: Request, name: str) -> Response:
        _, body = self._post(request)
        action = {
            "revoke-credential": actions.revoke_credential,
            "revoke-agent": actions.revoke_agent,
            "revoke-grant": actions.revoke_grant,
            "explain": actions.explain,
        }[name]
        return self._json(200, action(self.core, body))

    async def sign_out(self, request: Request) -> Response:
        await self._screen(request)
        session, _ = self._post(request)
        self.access.end(session)
        self.hub.end(session.key)  # its open pages' streams end with it
        with via(actions.VIA), self.core.store.transaction() as tx:
            tx.append_event({"event": "dashboard.closed", "user": self.core.user_ref()})
        answer = self._json(200, {"signed_out": True, "at": time.time()})
        answer.headers["Set-Cookie"] = access.clear_cookie(self.port)
        return answer


def read_cookie(request: Request, port: int) -> str | None:
    """The session cookie's value; with several ``Cookie`` headers, the first that has it."""
    for header in request.headers.get_all("Cookie"):
        value = access.read_cookie(header, port)
        if value is not None:
            return value
    return None
