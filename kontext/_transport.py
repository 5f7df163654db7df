"""Posting forms to the daemon's loopback issuer over kept-alive connections.

A per-request credential is only cheap if asking for one is: a new TCP
connection per ``require`` costs the daemon an accept and the caller a
handshake. So one pooled ``httpx.Client`` serves every thread of the process
(httpx clients are thread-safe), dropped in a forked child (its sockets belong
to the parent); and one ``httpx.AsyncClient`` serves each asyncio event loop
(its connections belong to that loop), closed when the loop shuts down its
async generators — which ``asyncio.run`` and ``asyncio.Runner`` do before
closing the loop. Without asyncio (trio), each call uses a client of its own.

Transport failures become ``Unavailable`` with what to do; the form (which holds
a token) is never part of a message.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import weakref
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from kontext._errors import Unavailable

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Enough kept-alive connections for 32 concurrent callers (the bench's top figure)
# without reconnecting; more callers queue for a connection rather than fail.
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=30.0)
HEADERS = {"Accept": "application/json", "User-Agent": "kontext-python"}

_lock = threading.Lock()
_sync: dict[str, httpx.Client] = {}
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def post_form(issuer: str, path: str, form: dict[str, str]) -> httpx.Response:
    """POST ``form`` to ``issuer + path``; the response body is read."""
    try:
        return _sync_client(issuer).post(path, data=form)
    except httpx.HTTPError as exc:
        raise _unreachable(issuer, exc) from None


async def apost_form(issuer: str, path: str, form: dict[str, str]) -> httpx.Response:
    """``post_form`` for asyncio (and, without pooling, any other async library)."""
    try:
        pool = await _async_client(issuer)
        if pool is not None:
            return await pool.post(path, data=form)
        async with _new_async(issuer) as client:
            return await client.post(path, data=form)
    except httpx.HTTPError as exc:
        raise _unreachable(issuer, exc) from None


def _unreachable(issuer: str, exc: httpx.HTTPError) -> Unavailable:
    if isinstance(exc, httpx.TimeoutException):
        why = "did not answer in time"
    elif isinstance(exc, httpx.ConnectError):
        why = "refused the connection (is it running?)"
    else:
        why = f"failed ({type(exc).__name__})"
    return Unavailable(
        f"kontextd at {issuer} {why}; start it with 'kontext daemon start' and run the "
        "agent again under 'kontext exec'"
    )


def _sync_client(issuer: str) -> httpx.Client:
    client = _sync.get(issuer)
    if client is None:
        with _lock:
            client = _sync.get(issuer)
            if client is None:
                client = httpx.Client(
                    base_url=issuer, timeout=TIMEOUT, limits=LIMITS, headers=HEADERS
                )
                _sync[issuer] = client
    return client


def _new_async(issuer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=issuer, timeout=TIMEOUT, limits=LIMITS, headers=HEADERS)


async def _async_client(issuer: str) -> httpx.AsyncClient | None:
    """This event loop's pooled client for ``issuer``; None outside asyncio."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    pools = _loops.get(loop)
    if pools is None:
        pools = {}
        closer = _close_with_the_loop(pools)
        # First iteration registers the generator with the loop (sys.set_asyncgen_hooks):
        # shutdown_asyncgens() then closes it, running its ``finally``. Held strongly here,
        # as the loop holds its async generators only weakly.
        await closer.asend(None)
        pools["\0closer"] = closer
        _loops[loop] = pools
    client = pools.get(issuer)
    if client is None:
        client = pools[issuer] = _new_async(issuer)
    return client


async def _close_with_the_loop(pools: dict[str, Any]) -> AsyncGenerator[None]:
    try:
        yield
    finally:
        for key, client in list(pools.items()):
            if isinstance(client, httpx.AsyncClient):
                await client.aclose()
            pools.pop(key, None)


def _forget_sync_clients() -> None:
    """In a forked child: the parent's pooled sockets are not ours to use or close."""
    _sync.clear()


def _close_sync_clients() -> None:
    with _lock:
        clients = list(_sync.values())
        _sync.clear()
    for client in clients:
        client.close()


os.register_at_fork(after_in_child=_forget_sync_clients)
atexit.register(_close_sync_clients)
