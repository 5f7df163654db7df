"""The gateway's fast path: a call without a request body, relayed with no task.

Most gateway calls are a GET (or a DELETE) with no body, and the upstream answers
them in one or a few reads. Those run entirely in callbacks on the loopback loop:
the decision (``proxy.Gateway.decide``, the same checks as every call), the request
written on an idle pooled connection, and the answer's head and body written to
the caller as each read of the upstream arrives — head and first bytes in one
write — with flow control both ways (the caller's transport pausing pauses reading
the upstream), and the audit event in the loop's next group commit. No coroutine,
task, future or timer per call: in the profiles (bench/FINDINGS.md) those were
most of the gateway's own cost. The one deadline, 30 s for the upstream's head and
then between its reads as on the general path, is the caller's connection's
(checked by the server's sweep).

``Gateway.handle`` (the general path) takes every other call — a request body,
HEAD, an upstream behind a proxy, a secret not yet in memory, no idle connection —
and a call whose reused connection the upstream closed before answering, which it
retries on a new one as it does its own. Both answer the same bytes and audit the
same ``api.call``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kontextd.api.web import wireformat
from kontextd.api.web.connection import HttpConnection
from kontextd.gateway import headers, upstream
from kontextd.gateway.authorize import Decision

if TYPE_CHECKING:
    from kontextd.gateway.proxy import Exchange, Gateway

log = logging.getLogger("kontextd.gateway")
NO_BODY = (204, 304)


class Relay:
    """One call on the fast path: ``upstream.Sink`` for the upstream's answer, and the
    caller's connection's ``relay`` (``kontextd.api.web.bodystream.Relayed``) until it is over."""

    def __init__(
        self,
        gateway: Gateway,
        conn: HttpConnection,
        exchange: Exchange,
        decision: Decision,
        up: upstream.Connection,
        origin: upstream.Origin,
    ) -> None:
        self.gateway = gateway
        self.conn = conn
        self.exchange = exchange
        self.decision = decision
        self.up = up
        self.origin = origin
        self.pending: list[bytes] = []
        self.chunked = False
        self.done = False
        self.close = False
        self.over = False

    def start(self, head: bytes) -> None:
        assert self.up.transport is not None
        self.up.sink = self
        self.conn.relay = self
        self.conn.wait_for_upstream(upstream.READ_TIMEOUT)
        self.up.transport.write(head)

    # -- the upstream's answer (upstream.Sink) ----------------------------------------

    def upstream_head(self, up: upstream.Connection) -> None:
        status = up.parser.get_status_code()
        self.exchange.status = status
        integ = self.decision.integration
        assert integ is not None and integ.base_url is not None
        if status == 401:
            self.gateway.provider_refused(integ.name)
        length = next((v for n, v in up.headers if n.lower() == "content-length"), None)
        size = int(length) if length is not None and length.isdigit() else None
        head_only = status in NO_BODY
        self.chunked = size is None and not head_only
        base = f"{self.gateway.core.issuer}/gw/{integ.name}"
        fields = headers.downstream_headers(up.headers, integ.base_url, base)
        self.close = self.conn.must_close(self.exchange.request, False)
        head = wireformat.stream_head(
            status, up.reason or None, fields, size, self.close, self.chunked
        )
        self.pending.append(head)

    def upstream_body(self, chunk: bytes) -> None:
        self.exchange.received += len(chunk)
        self.pending.append(wireformat.chunk(chunk) if self.chunked else chunk)

    def upstream_complete(self) -> None:
        if self.chunked:
            self.pending.append(wireformat.LAST_CHUNK)
        self.done = True

    def upstream_read(self) -> None:
        if self.over:
            return
        if self.pending:
            pending = self.pending
            self.conn.write(pending[0] if len(pending) == 1 else b"".join(pending))
            self.pending = []
        if self.done:
            self._finish(reusable=self.up.keep_alive)
        elif self.exchange.status:
            self.conn.wait_for_upstream(upstream.READ_TIMEOUT)  # between reads, as next_chunk

    def upstream_lost(self, reason: str) -> None:
        if self.over:
            return
        if not self.exchange.status:
            # A kept-alive connection the upstream closed (or broke) before answering:
            # the general path tries a new one, once, as it does its own (there is no
            # body to have spent).
            self._detach()
            self.gateway.retry(self.conn, self.exchange.request)
            return
        self._ended_early(reason)

    # -- the caller's connection (bodystream.Relayed) -----------------------------

    def pause(self) -> None:
        if self.up.transport is not None:
            self.up.transport.pause_reading()

    def resume(self) -> None:
        if self.up.transport is not None and not self.up.closed:
            self.up.transport.resume_reading()

    def lost(self) -> None:
        """The caller went away: the call still reached the upstream, so it is audited."""
        if self.over:
            return
        self._detach()
        self.up.close()
        self.gateway.audit(self.exchange, self.decision)

    def expired(self) -> None:
        if self.over:
            return
        if not self.exchange.status:
            self.up.failure = "the upstream did not answer in time"
            self._upstream_failed(self.up.failure)
        else:
            self._ended_early("the upstream stopped sending")

    # -- endings ----------------------------------------------------------------------

    def _detach(self) -> None:
        self.over = True
        self.up.sink = None
        self.conn.relay = None

    def _finish(self, reusable: bool) -> None:
        self._detach()
        self.gateway.audit(self.exchange, self.decision)
        if reusable and not self.up.closed:
            self.gateway.core.gateway.upstream_pool().put(self.origin, self.up)
        else:
            self.up.close()
        self.conn.finished(self.close)

    def _upstream_failed(self, reason: str) -> None:
        """No head came: 502, as the general path answers (and the caller hangs up)."""
        self._detach()
        self.up.close()
        request = self.exchange.request
        request.close = True
        refused = self.decision.refuse(502, f"the upstream did not answer ({reason[:120]})")
        self.conn.send(request, self.gateway.refusal(self.exchange, refused, "api.call"))

    def _ended_early(self, reason: str) -> None:
        """Mid-answer: what arrived goes out, then the connection ends (a short answer)."""
        log.info("gateway stream to %s ended early: %s", self.exchange.name, reason)
        if self.pending:
            self.conn.write(b"".join(self.pending))
            self.pending = []
        self._detach()
        self.up.close()
        self.gateway.audit(self.exchange, self.decision)
        self.conn.finished(True)
