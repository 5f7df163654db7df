"""The loopback port's HTTP stack: asyncio with llhttp (httptools), no thread per connection.

- ``server``: the listener, admission (per-uid caps), dispatch by handler kind,
  group commit of inline handlers;
- ``connection``: one connection — parsing, head deadline and byte budget, order,
  flow control;
- ``routing``: routes and their security ``Policy`` (how to add a route is there);
- ``messages``: ``Request``, ``Response``, ``Stream``;
- ``sse``: Server-Sent Events from the store's appended events, no thread per stream;
- ``refusals``: refused requests in the audit, rate-limited;
- ``wireformat``: answer heads and chunked framing.

Why this stack and not uvicorn, Starlette or h11: bench/FINDINGS.md.
"""
