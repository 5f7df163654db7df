"""Server-Sent Events on the loopback stack (``kontextd.api.web.sse``): what the
dashboard and ``audit tail -f`` will stream. A real ``HttpServer`` over a real
``Store``, with one SSE route as a later route would declare it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kontextd.api.web import sse
from kontextd.api.web.messages import Request, Stream
from kontextd.api.web.routing import route
from kontextd.api.web.server import HttpServer
from kontextd.store.db import Store
from tests.conftest import wait_until

STREAMS = 20


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[HttpServer, Store]]:
    store = Store(str(tmp_path / "kontext.db"))
    box: list[HttpServer] = []

    async def events(request: Request) -> Stream:
        after = int(request.headers.get("Last-Event-ID") or store.last_event_id())
        return sse.events(box[0].feed, store, after=after)

    server = HttpServer(0, [route("GET", r"/events", events, kind="async")], store)
    box.append(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, store
    server.shutdown()
    server.server_close()
    thread.join(10)
    store.close()


def _open(port: int, last_id: int | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    resume = b"Last-Event-ID: %d\r\n" % last_id if last_id is not None else b""
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" % (port, resume))
    return sock


def _read_until(sock: socket.socket, marker: bytes, count: int = 1) -> bytes:
    data = b""
    while data.count(marker) < count:
        chunk = sock.recv(65536)
        assert chunk, data[-300:]
        data += chunk
    return data


def test_every_stream_gets_each_new_event_without_a_thread_each(
    served: tuple[HttpServer, Store],
) -> None:
    server, store = served
    threads_before = threading.active_count()
    socks = [_open(server.port) for _ in range(STREAMS)]
    try:
        heads = [_read_until(s, b": kontextd event stream") for s in socks]
        assert all(h.startswith(b"HTTP/1.1 200 ") for h in heads)
        assert all(b"Content-Type: text/event-stream" in h for h in heads)
        assert threading.active_count() == threads_before  # no thread per stream
        with store.transaction() as tx:
            for n in range(5):
                tx.append_event({"event": "test.sse", "n": n})
        for sock in socks:
            data = _read_until(sock, b"\nevent: audit\n", 5)
            assert b'"event":"test.sse"' in data and b'"n":4' in data
    finally:
        for sock in socks:
            sock.close()
    # A stream whose caller left is ended at once (its coroutine is cancelled).
    assert wait_until(lambda: not server.connections, timeout=10)


def test_a_stream_resumes_after_its_last_event_id(served: tuple[HttpServer, Store]) -> None:
    server, store = served
    with store.transaction() as tx:
        first = tx.append_event({"event": "test.sse", "n": 1})["id"]
        tx.append_event({"event": "test.sse", "n": 2})
    with _open(server.port, last_id=first) as sock:
        data = _read_until(sock, b"\nevent: audit\n")
    assert b'"n":2' in data and b'"n":1,' not in data
