"""Open dashboards, as the bench's load: each one a session and a live event stream.

Usage: ``dashboard_clients.py PORT`` with one session cookie per line on stdin, then
an empty line. For each cookie it opens the stream a dashboard page holds
(``/dashboard/api/events``: the Overview's ``pulse`` of state changes for every
other one, every event for the rest, as the Activity page does) and, like the Overview
page, fetches ``/dashboard/api/overview`` at most every 3 s while events arrive, on one
keep-alive connection per page as a browser's ``fetch`` does (each new connection is
screened once against the live exec trees: a new one per reload would count that
``/proc`` look every time, which a browser does not cause).
Prints ``ready`` once every stream has sent its past events; at end of stdin,
prints one JSON line of what it received and exits. One process, one event loop.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

RELOAD_GAP = 3.0
RELOADS: set[asyncio.Task[None]] = set()


class Counts:
    def __init__(self) -> None:
        self.events = 0
        self.overviews = 0
        self.ready = 0


def _request(port: int, path: str, cookie: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
        "Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n\r\n"
    ).encode()


class Page:
    """One dashboard's fetches of ``/dashboard/api/overview`` on the keep-alive connection
    a browser holds for its page's fetches (reopened only if the server closes it)."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port, self.cookie = port, cookie
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.busy = asyncio.Lock()  # one fetch at a time, as the page's settle() does

    async def overview(self, counts: Counts) -> None:
        async with self.busy:
            try:
                await self._fetch()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()  # the server ended an idle connection: a browser opens another
                await self._fetch()
            counts.overviews += 1

    async def _fetch(self) -> None:
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.conn
        writer.write(_request(self.port, "/dashboard/api/overview", self.cookie))
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        await reader.readexactly(length)
        if "connection: close" in head:
            self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None


async def stream(
    port: int, cookie: str, state_only: bool, counts: Counts, all_ready: asyncio.Event, total: int
) -> None:
    """Read the stream as a browser would, cheaply: count events by their marker."""
    query = "history=100" + ("&scope=state&mode=pulse" if state_only else "")
    page = Page(port, cookie)
    if state_only:
        await page.overview(counts)  # the Overview loads its data, then opens its pulse
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request(port, f"/dashboard/api/events?{query}", cookie))
    last_reload, ready, tail = 0.0, False, b""
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                return
            both = tail + data
            seen = sum(both.count(m) - tail.count(m) for m in (b"event: audit", b"event: changed"))
            tail = data[-16:]
            counts.events += seen
            if not ready and b"event: ready" in data:
                ready = True
                counts.ready += 1
                if counts.ready == total:
                    all_ready.set()
            if state_only and seen and time.monotonic() - last_reload >= RELOAD_GAP:
                last_reload = time.monotonic()
                reload = asyncio.get_running_loop().create_task(page.overview(counts))
                RELOADS.add(reload)
                reload.add_done_callback(RELOADS.discard)
    finally:
        writer.close()
        page.close()


async def main() -> None:
    port = int(sys.argv[1])
    cookies = []
    for line in sys.stdin:
        if not line.strip():
            break
        cookies.append(line.strip())
    counts = Counts()
    all_ready = asyncio.Event()
    tasks = [
        asyncio.create_task(stream(port, cookie, i % 2 == 0, counts, all_ready, len(cookies)))
        for i, cookie in enumerate(cookies)
    ]
    await asyncio.wait_for(all_ready.wait(), 60)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    for task in [*tasks, *RELOADS]:
        task.cancel()
    await asyncio.gather(*tasks, *RELOADS, return_exceptions=True)
    print(json.dumps({"events": counts.events, "overviews": counts.overviews}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
