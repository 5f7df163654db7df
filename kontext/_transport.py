"""Posting forms to the daemon's loopback issuer over kept-alive connections.

A per-request credential is only cheap if asking for one is. Measured in an
exec'd child on this 2-core box (bench/library_bench.py has the method): an
httpx ``Client.post`` costs ~0.6 ms of the caller's CPU per exchange, the
standard library's ``http.client`` ~0.17 ms, for the same daemon work. So the
synchronous path keeps a small pool of ``http.client`` connections per issuer,
shared by the process's threads (dropped in a forked child: those sockets are
the parent's), and ``import kontext; kontext.require`` never imports httpx.

The asyncio path uses one ``httpx.AsyncClient`` per event loop (its connections
belong to that loop), closed when the loop shuts down its async generators —
which ``asyncio.run`` and ``asyncio.Runner`` do before closing the loop. Without
asyncio (trio), each call uses a client of its own.

Transport failures become ``Unavailable`` with what to do; the form (which holds
a token) is never part of a message.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import select
import threading
import time
import urllib.parse
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kontext._errors import Unavailable

if TYPE_CHECKING:
    import asyncio
    import weakref

    import httpx

TIMEOUT = 10.0
# The daemon closes a connection idle for 30 s; never reuse one near that age.
IDLE_REUSE = 15.0
MAX_IDLE = 64  # kept-alive connections per issuer: 32 concurrent callers and then some
FORM = "application/x-www-form-urlencoded"
HEADERS = {"Accept": "application/json", "Content-Type": FORM, "User-Agent": "kontext-python"}
# A reused connection the daemon closed in the meantime fails like this before
# any answer; the request is sent once more on a new connection.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; ``{}`` when it is not one."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class _Pool:
    """Idle kept-alive connections to one issuer; a caller takes one, returns it after."""

    def __init__(self, issuer: str) -> None:
        parsed = urllib.parse.urlsplit(issuer)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.lock = threading.Lock()
        self.idle: list[tuple[http.client.HTTPConnection, float]] = []

    def post(self, path: str, body: bytes) -> Reply:
        conn, reused = self._take()
        try:
            try:
                reply = self._send(conn, path, body)
            except STALE:
                if not reused:
                    raise
                conn.close()
                conn = self._connect()
                reply = self._send(conn, path, body)
        except BaseException:
            conn.close()
            raise
        self._give_back(conn)
        return reply

    def _send(self, conn: http.client.HTTPConnection, path: str, body: bytes) -> Reply:
        conn.request("POST", path, body=body, headers=HEADERS)
        answer = conn.getresponse()
        data = answer.read()
        headers = {k.lower(): v for k, v in answer.getheaders()}
        reply = Reply(answer.status, headers, data)
        if answer.will_close:
            conn.close()
        return reply

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        with self.lock:
            while self.idle:
                conn, since = self.idle.pop()
                if now - since < IDLE_REUSE and not _closed_by_peer(conn):
                    return conn, True
                conn.close()
        return self._connect(), False

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:  # the daemon said Connection: close
            return
        with self.lock:
            if len(self.idle) < MAX_IDLE:
                self.idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn, _ in idle:
            conn.close()


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle kept-alive socket that is readable has EOF (or junk) waiting: unusable."""
    sock = conn.sock
    if sock is None:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


_lock = threading.Lock()
_pools: dict[str, _Pool] = {}


def post_form(issuer: str, path: str, form: dict[str, str]) -> Reply:
    """POST ``form`` to ``issuer + path`` and read the whole answer."""
    pool = _pools.get(issuer)
    if pool is None:
        with _lock:
            pool = _pools.setdefault(issuer, _Pool(issuer))
    try:
        return pool.post(path, urllib.parse.urlencode(form).encode())
    except (OSError, http.client.HTTPException) as exc:
        raise unreachable(issuer, exc) from None


def unreachable(issuer: str, exc: BaseException) -> Unavailable:
    """What to say when the daemon cannot be reached (``exc`` is never shown raw)."""
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        why = "did not answer in time"
    elif isinstance(exc, ConnectionRefusedError) or name == "ConnectError":
        why = "refused the connection (is it running?)"
    else:
        why = f"failed ({name})"
    return Unavailable(
        f"kontextd at {issuer} {why}; start it with 'kontext daemon start' and run the "
        "agent again under 'kontext exec'"
    )


def _forget_pools() -> None:
    """In a forked child: the parent's connections are not ours to use. Closing our
    copies of their descriptors leaves the parent's open; the locks are new, as one
    may have been held by a thread that does not exist here."""
    global _lock
    _lock = threading.Lock()
    pools = list(_pools.values())
    _pools.clear()
    for pool in pools:
        for conn, _ in pool.idle:
            conn.close()


def _close_pools() -> None:
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


os.register_at_fork(after_in_child=_forget_pools)
atexit.register(_close_pools)


# -- asyncio ------------------------------------------------------------------

_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] | None = None


async def apost_form(issuer: str, path: str, form: dict[str, str]) -> Reply:
    """``post_form`` for asyncio (and, without pooling, any async library httpx runs on)."""
    import httpx

    try:
        client = await _loop_client(issuer)
        if client is not None:
            answer = await client.post(path, data=form)
        else:
            async with _new_async(issuer) as own:
                answer = await own.post(path, data=form)
    except httpx.HTTPError as exc:
        raise unreachable(issuer, exc) from None
    return Reply(
        answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content
    )


def _new_async(issuer: str) -> httpx.AsyncClient:
    import httpx

    limits = httpx.Limits(max_connections=MAX_IDLE, keepalive_expiry=IDLE_REUSE)
    return httpx.AsyncClient(base_url=issuer, timeout=TIMEOUT, limits=limits, headers=HEADERS)


async def _loop_client(issuer: str) -> httpx.AsyncClient | None:
    """This event loop's pooled client for ``issuer``; None outside asyncio."""
    import asyncio
    import weakref

    global _loops
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if _loops is None:
        _loops = weakref.WeakKeyDictionary()
    pools = _loops.get(loop)
    if pools is None:
        pools = {}
        closer = _close_with_the_loop(pools)
        # The first iteration registers the generator with the loop (sys.set_asyncgen_hooks);
        # shutdown_asyncgens() then closes it, running its ``finally``. It is held strongly
        # here, as the loop holds its async generators only weakly.
        await closer.asend(None)
        pools["\0closer"] = closer
        _loops[loop] = pools
    client = pools.get(issuer)
    if client is None:
        client = pools[issuer] = _new_async(issuer)
    return client


async def _close_with_the_loop(pools: dict[str, Any]) -> AsyncGenerator[None]:
    import httpx

    try:
        yield
    finally:
        for key, client in list(pools.items()):
            if isinstance(client, httpx.AsyncClient):
                await client.aclose()
            pools.pop(key, None)
