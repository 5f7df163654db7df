"""The loopback HTTP server: one asyncio event loop on its own thread, no thread per connection.

- ``HttpServer`` binds 127.0.0.1 at construction (the port is published before
  serving), then ``serve_forever`` runs the loop until ``shutdown``.
- Admission: at most ``MAX_CONNECTIONS`` open, and at most ``PER_STRANGER`` from
  any one OS user other than ours (the peer's uid, ``kontext.common.peeruid``;
  anyone on the machine can connect to 127.0.0.1).
- ``classify`` runs as soon as a head is parsed: Host, route and its ``Policy``
  (``routing``); a refusal is answered without reading the body into memory.
- ``dispatch`` runs handlers by kind. ``inline`` handlers of every request that
  became ready in one loop iteration run together in one ``Store.batch()`` (one
  SQLite commit), and their answers are sent only after it committed — if the
  commit fails, each becomes the storage error. ``blocking`` handlers (keyring,
  provider calls) run on a small executor; ``async`` ones are tasks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from kontext.common import peeruid, wire
from kontextd.api.web import routing, sse
from kontextd.api.web.connection import HttpConnection
from kontextd.api.web.messages import Request, Response, Stream, error_response
from kontextd.api.web.refusals import RefusalLog
from kontextd.errors import ApiError
from kontextd.store.db import Store, StoreWriteError

log = logging.getLogger("kontextd.loopback")

MAX_CONNECTIONS = 4096
PER_STRANGER = 64  # connections at once from one OS user other than ours
EXECUTOR_THREADS = 4
BACKLOG = 1024
SWEEP_INTERVAL = 1.0  # seconds between deadline checks (idle, whole head)


class HttpServer:
    """Serves ``routes`` on 127.0.0.1:``port`` (0: any free port)."""

    def __init__(self, port: int, routes: list[routing.Route], store: Store) -> None:
        self.router = routing.Router(routes)
        self.store = store
        self.sock = socket.create_server(("127.0.0.1", port), backlog=BACKLOG)
        self.server_address: tuple[str, int] = self.sock.getsockname()[:2]
        self.port = self.server_address[1]
        self.hosts = routing.allowed_hosts(self.port)
        self.own_uid = os.getuid() if peeruid.supported() else None
        self.refusals = RefusalLog(store)
        self.loop = asyncio.new_event_loop()
        self.feed = sse.AppendedFeed(store, self.loop)  # for routes that stream the audit
        self.executor = concurrent.futures.ThreadPoolExecutor(
            EXECUTOR_THREADS, thread_name_prefix="loopback-io"
        )
        self.connections: set[HttpConnection] = set()
        self.stopping = False
        self._per_uid: dict[int | None, int] = {}
        self._batch: list[tuple[HttpConnection, Request]] = []
        self._deferred: list[Callable[[], None]] = []
        self._stopped = threading.Event()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._accept_said = 0.0

    # -- life -----------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Run the loop on this thread until ``shutdown``."""
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._loop_error)
        self.loop.set_default_executor(self.executor)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self._stopped.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await self.loop.create_server(
            lambda: HttpConnection(self), sock=self.sock, backlog=BACKLOG
        )
        self._started.set()
        self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        await self._stop.wait()
        server.close()
        for conn in list(self.connections):
            conn.close()
        await asyncio.sleep(0)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:  # streams and handlers still running: end them cleanly
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _sweep(self) -> None:
        """Once a second: close connections past their idle or head deadline."""
        now = time.monotonic()
        for conn in list(self.connections):
            conn.expire_if_due(now)
        if not self.stopping:
            self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def shutdown(self) -> None:
        """Stop accepting and close every connection; wait for the loop to end."""
        self.stopping = True
        if self._started.is_set() and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._stopped.wait(10)

    def server_close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(OSError):
            self.sock.close()
        if not self.loop.is_running():
            self.loop.close()

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the loop from another thread."""
        self.loop.call_soon_threadsafe(fn)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "accept" in message:
            # EMFILE: asyncio stops accepting for a second itself, but 3.11 reports it once
            # per backlog slot in one go (its accept loop does not stop): say it once.
            now = time.monotonic()
            if now - self._accept_said >= 0.5:
                self._accept_said = now
                log.warning("accept failed (%s); accepting again in 1 s", context.get("exception"))
            return
        log.error("loopback loop: %s", message, exc_info=context.get("exception"))

    # -- admission ------------------------------------------------------------------

    def admit(self, conn: HttpConnection) -> bool:
        """Room for one more connection from ``conn.uid``? (Strangers have a small cap.)"""
        held = self._per_uid.get(conn.uid, 0)
        stranger = conn.uid != self.own_uid or conn.uid is None
        if len(self.connections) >= MAX_CONNECTIONS or (stranger and held >= PER_STRANGER):
            return False
        self._per_uid[conn.uid] = held + 1
        self.connections.add(conn)
        return True

    def release(self, conn: HttpConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            left = self._per_uid.get(conn.uid, 1) - 1
            if left:
                self._per_uid[conn.uid] = left
            else:
                self._per_uid.pop(conn.uid, None)

    # -- requests ---------------------------------------------------------------------

    def classify(self, conn: HttpConnection, request: Request) -> None:
        """Host, route and policy, before the body: sets ``request.route`` or a refusal."""
        try:
            if (request.headers.get("Host") or "").lower() not in self.hosts:
                self.refusals.note(request, "Host is not our loopback address (DNS rebinding?)")
                raise ApiError(wire.MISDIRECTED, "this server answers only to its loopback address")
            found, params = self.router.find(request.method, request.path)
            reason = routing.check(found.policy, request, self.port, self.own_uid)
            if reason is not None:
                self.refusals.note(request, reason)
                raise ApiError(wire.FORBIDDEN, reason)
            agent = self.agent_at(request) if found.policy.user_only else None
            if agent is not None:
                raise ApiError(wire.FORBIDDEN, agent)
        except ApiError as exc:
            request.route = _Refusal(error_response(exc))
            return
        request.route = found
        request.params = params

    def agent_at(self, request: Request) -> str | None:
        """Why ``request`` is refused because an agent holds its connection's other end
        (recorded), or None. Here: None, no agents; ``LoopbackServer`` knows them."""
        return None

    def dispatch(self, conn: HttpConnection, request: Request) -> None:
        route = request.route
        if isinstance(route, _Refusal):
            conn.send(request, route.response)
        elif (
            request.method == "OPTIONS"
            and route.policy.cors
            and (route.methods is None or "OPTIONS" not in route.methods)
        ):
            conn.send(request, _preflight(route))
        elif route.fast is not None and self._fast(conn, request):
            return  # taken: it answers through ``conn`` (``routing.Route.fast``)
        elif route.kind == "inline":
            self._batch.append((conn, request))
            self._schedule()
        else:
            self.loop.create_task(self._run(conn, request))

    def _fast(self, conn: HttpConnection, request: Request) -> bool:
        route = request.route
        try:
            taken: bool = route.fast(conn, request)
            return taken
        except Exception as exc:
            conn.send(request, _error(route, exc, request))
            return True

    def hand_over(self, conn: HttpConnection, request: Request) -> None:
        """Run the route's own handler for a request its fast path gave back."""
        self.loop.create_task(self._run(conn, request))

    def defer(self, write: Callable[[], None]) -> None:
        """Run ``write`` (a store write whose result no one waits for, e.g. a gateway
        call's audit event) in this iteration's batch: one commit for all of them."""
        self._deferred.append(write)
        self._schedule()

    def _schedule(self) -> None:
        if len(self._batch) + len(self._deferred) == 1:
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Every inline request ready this iteration, and the deferred writes, in one
        store batch (group commit); answers go out only after it committed."""
        batch, self._batch = self._batch, []
        deferred, self._deferred = self._deferred, []
        answers: list[Response] = []
        try:
            with self.store.batch():
                for write in deferred:
                    _quietly(write)
                answers = [self._call(request) for _, request in batch]
        except StoreWriteError as exc:
            log.warning("a batch of loopback writes was lost: %s", exc)
            answers = [error_response(exc) for _ in batch]
        for (conn, request), answer in zip(batch, answers, strict=True):
            conn.send(request, _cors(request, answer))

    def _call(self, request: Request) -> Response:
        route = request.route
        try:
            answer: Response = route.handler(request, *request.params)
            return answer
        except Exception as exc:
            return _error(route, exc, request)

    async def _run(self, conn: HttpConnection, request: Request) -> None:
        route = request.route
        conn.task = asyncio.current_task()
        try:
            if route.kind == "blocking":
                answer = await self.loop.run_in_executor(
                    self.executor, route.handler, request, *request.params
                )
            else:
                answer = await route.handler(request, *request.params)
        except Exception as exc:
            answer = _error(route, exc, request)
        if conn.closing:
            if isinstance(answer, Stream):
                with contextlib.suppress(Exception):
                    await answer.chunks.aclose()  # type: ignore[attr-defined]
            return
        if isinstance(answer, Stream):
            with contextlib.suppress(Exception):
                await conn.send_stream(request, answer)
        else:
            conn.send(request, _cors(request, answer))


def _quietly(write: Callable[[], None]) -> None:
    """A deferred write that fails is logged; it must not take the batch down."""
    try:
        write()
    except Exception:
        log.exception("a deferred loopback write failed")


class _Refusal:
    """Stands in for a route when the request was refused before routing finished."""

    streaming = False
    kind = "refused"

    def __init__(self, response: Response) -> None:
        self.response = response


def _error(route: Any, exc: Exception, request: Request) -> Response:
    from kontextd.api.httpbase import api_error

    error = api_error(exc, f"{request.method[:16]} {request.path[:200]}")
    if route.errors is not None:
        answer: Response = route.errors(error)
        return answer
    return error_response(error)


def _cors(request: Request, answer: Response) -> Response:
    route = request.route
    if getattr(route, "policy", None) is not None and route.policy.cors:
        answer.headers.setdefault("Access-Control-Allow-Origin", "*")
    return answer


def _preflight(route: routing.Route) -> Response:
    methods = ", ".join(sorted(route.methods or {"GET", "POST"}))
    return Response(
        204,
        b"",
        {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
        },
    )
