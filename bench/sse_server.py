"""A real ``kontextd.api.web.HttpServer`` with one SSE route, for bench/connections.py.

Prints its port; each line on stdin ("N") appends N audit events, which every
open ``GET /events`` stream then receives. Ends when stdin closes.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from kontextd.api.web import sse
from kontextd.api.web.messages import Request
from kontextd.api.web.routing import route
from kontextd.api.web.server import HttpServer
from kontextd.store.db import Store


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kb-sse-") as where:
        store = Store(str(Path(where) / "kontext.db"))
        holder: list[HttpServer] = []

        async def events(request: Request) -> sse.Stream:
            server = holder[0]
            return sse.events(server.feed, store, after=store.last_event_id())

        server = HttpServer(0, [route("GET", r"/events", events, kind="async")], store)
        holder.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(server.port, flush=True)
        for line in sys.stdin:
            with store.transaction() as tx:
                for n in range(int(line)):
                    tx.append_event({"event": "bench.event", "n": n})
        server.shutdown()
        server.server_close()
        store.close()


if __name__ == "__main__":
    main()
