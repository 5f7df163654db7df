"""The control socket's server: one selector loop for exec's leases, threads for the rest.

Every ``kontext exec`` opens a connection, asks for a credential, and keeps the
connection open as the credential's lease until its child exits. A thread per
connection (``socketserver.ThreadingMixIn``) cost more daemon CPU than minting,
storing and auditing the credential together (bench/FINDINGS.md): thread start,
lock hand-offs, buffered file objects. So this loop accepts every connection,
checks the peer's uid (SO_PEERCRED) before reading a byte, and answers the three
lease requests itself — ``POST /v1/credentials``, ``/v1/lease/child``,
``/v1/lease/release``, see ``kontextd.api.leases`` — without blocking. A
lease's end is the kernel closing the socket (exit or SIGKILL): the loop sees
EOF and revokes at once.

Anything else — another route, a head it does not parse exactly, ``Expect``,
chunked bodies, a token-delivery issuance that may call a provider — is handed,
bytes already read and leases held, to a thread running ``ControlHandler``, the
one definition of every route's behaviour. The loop never waits on a client: a
partial request waits in its buffer, a partial answer in its outbox.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from kontext.common import wire
from kontextd import credentials
from kontextd.api import peercred
from kontextd.api.control import REFUSAL, ControlHandler, Peer
from kontextd.api.gate import Gate
from kontextd.api.leases import LeaseConnection, error_response, parse
from kontextd.core import Core
from kontextd.errors import ApiError
from kontextd.store.db import StoreWriteError

log = logging.getLogger("kontextd.control")

IDLE_LIMIT = 30.0  # a connection without a lease must finish a request within this
ACCEPT_BURST = 64
# Requests are a few hundred bytes; a 64 KiB buffer per recv costs an allocation that
# shows in profiles. A bigger request simply takes more reads.
RECV_SIZE = 8192
ACCEPT_PAUSE = 0.1  # seconds without accepting after accept() failed (e.g. EMFILE)


def _token_delivery(core: Core) -> bool:
    """Token-mode OAuth integrations may refresh at a provider: never on the loop."""
    return any(
        i.mode == "token" and i.credential == "oauth" for i in core.config.integrations.values()
    )


class ControlServer:
    """The control socket (0600, this OS user only) and the loop that serves it."""

    def __init__(self, path: str, core: Core, status: Any) -> None:
        self.core = core
        self.status = status
        self.gate = Gate(core)
        self._uid = os.getuid()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600; the 0700 directory guards it too
        try:
            self._listener.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._listener.listen(256)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._conns: dict[int, LeaseConnection] = {}
        self._answered: list[LeaseConnection] = []  # answers waiting for the commit
        self._accept_again = 0.0  # while accept() fails (EMFILE): when to try again
        self._batching = False
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._stop = False

    # -- life -----------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until ``shutdown``; a failure on one connection closes only that one."""
        self._running.set()
        next_sweep = time.monotonic() + 1.0
        try:
            while not self._stop:
                try:
                    self._resume_accepting()
                    events = self._selector.select(timeout=0.1 if self._accept_again else 1.0)
                    if events:
                        self._in_batch(self._ready_all, events)
                    if time.monotonic() >= next_sweep:
                        self._sweep_idle()
                        next_sweep = time.monotonic() + 1.0
                except Exception:  # a bug must not take every exec down with the loop
                    log.exception("control loop iteration failed; serving on")
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop the loop and wait for it (leases are ended by ``Daemon.stop``)."""
        self._stop = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._running.is_set():
            self._stopped.wait(10)

    def server_close(self) -> None:
        for conn in list(self._conns.values()):
            self._forget(conn)
            conn.sock.close()
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    # -- events ---------------------------------------------------------------

    def _ready(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.fileobj is self._listener:
            self._accept()
            return
        if key.fileobj is self._wake_r:
            with contextlib.suppress(OSError):
                self._wake_r.recv(64)
            return
        conn: LeaseConnection = key.data
        if conn.sock.fileno() < 0:
            return  # closed earlier in this same batch of events
        try:
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
            if mask & selectors.EVENT_READ and conn.sock.fileno() >= 0:
                self._read(conn)
        except Exception:
            log.exception("control connection failed")
            self._close(conn)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: serve the rest, accept later
                self._pause_accepting(exc)
                return
            try:
                pid, uid = peercred.peer(sock)
            except OSError:
                pid, uid = None, -1
            if uid != self._uid:
                self._refuse(sock, pid, uid)
                continue
            sock.setblocking(False)
            conn = LeaseConnection(sock, pid, self.gate)
            self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _pause_accepting(self, exc: OSError) -> None:
        """The pending connection stays in the backlog, so the listener stays readable:
        stop watching it for a moment instead of spinning (and logging) on it."""
        log.warning("accept failed (%s); accepting again in %.1f s", exc, ACCEPT_PAUSE)
        self._selector.unregister(self._listener)
        self._accept_again = time.monotonic() + ACCEPT_PAUSE

    def _resume_accepting(self) -> None:
        if self._accept_again and time.monotonic() >= self._accept_again:
            self._accept_again = 0.0
            self._selector.register(self._listener, selectors.EVENT_READ, None)

    def _refuse(self, sock: socket.socket, pid: int | None, uid: int) -> None:
        log.warning("refused control connection from uid %s pid %s", uid, pid)
        try:
            # A fresh socket's send buffer is empty: this cannot block.
            sock.setblocking(False)
            sock.send(REFUSAL)
        except OSError:
            pass
        sock.close()
        threading.Thread(target=_audit_refusal, args=(self.core, pid, uid), daemon=True).start()

    def _read(self, conn: LeaseConnection) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.buf += data
        self._serve(conn)

    def _ready_all(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, mask in events:
            self._ready(key, mask)

    def _in_batch(self, work: Callable[..., None], *args: Any) -> None:
        """Group commit: run ``work`` under one store transaction, then send its answers.

        No answer leaves before the commit that makes it true; at 32 concurrent
        execs a batch holds several issuances and lease ends, and one commit
        (WAL, synchronous=NORMAL) replaces one per write."""
        self._batching = True
        try:
            with self.core.store.batch():
                work(*args)
        except StoreWriteError as exc:
            log.warning("a batch of control requests failed to commit: %s", exc)
            self._undo(exc)
        except Exception:  # rolled back: none of the batch's answers is true any more
            log.exception("a batch of control requests failed")
            self._undo(ApiError(wire.INTERNAL, "internal error; see the daemon log"))
        finally:
            self._batching = False
        answered, self._answered = self._answered, []
        for conn in answered:
            conn.before = None
            if conn.sock.fileno() >= 0:
                self._flush(conn)

    def _undo(self, exc: ApiError) -> None:
        """Nothing the batch wrote is stored: its answers become the storage error."""
        for conn in self._answered:
            if conn.before is not None:
                conn.leases = conn.before
            conn.outbox = error_response(exc, close=True)
            conn.closing = True

    def _serve(self, conn: LeaseConnection) -> None:
        """Answer every complete request in the buffer, in order (sent after the commit)."""
        while conn.buf and not conn.outbox and not conn.closing:
            req = parse(conn.buf)
            if req is False:
                return
            if req is True or (req.path == "/v1/credentials" and _token_delivery(self.core)):
                self._hand_off(conn)
                return
            del conn.buf[: req.size]
            conn.since = time.monotonic()
            conn.closing = req.close
            if conn.before is None:
                conn.before = list(conn.leases)
                self._answered.append(conn)
            conn.outbox = conn.answer(self.core, req)

    def _flush(self, conn: LeaseConnection) -> None:
        try:
            sent = conn.sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.outbox = conn.outbox[sent:]
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbox else 0)
        if mask != conn.mask:
            conn.mask = mask
            self._selector.modify(conn.sock, mask, conn)
        if conn.outbox:
            return
        if conn.closing:
            self._close(conn)
        elif conn.buf and self._batching:
            self._serve(conn)  # its answers join the batch in progress
        elif conn.buf:
            self._in_batch(self._serve, conn)  # requests that arrived pipelined

    # -- endings --------------------------------------------------------------

    def _forget(self, conn: LeaseConnection) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)

    def _close(self, conn: LeaseConnection) -> None:
        """The connection is gone: every lease it held ends now."""
        if conn.sock.fileno() < 0:
            return
        self._forget(conn)
        conn.sock.close()
        # While stopping, Daemon.stop() revokes every live credential itself.
        if not self.core.stopping.is_set():
            for jti in conn.leases:
                try:
                    credentials.end(self.core, jti, "revoked", conn.reason)
                except StoreWriteError as exc:  # dead in memory at once; stored later
                    log.warning("could not record the end of a lease: %s", exc)
        self.core.trees.drop(conn.leases)
        conn.leases.clear()

    def _sweep_idle(self) -> None:
        cutoff = time.monotonic() - IDLE_LIMIT
        for conn in [c for c in self._conns.values() if not c.leases and c.since < cutoff]:
            self._close(conn)

    def _hand_off(self, conn: LeaseConnection) -> None:
        """Give the connection, its unread bytes and its leases to a handler thread."""
        self._forget(conn)
        peer = Peer(conn.pid, bytes(conn.buf), list(conn.leases), conn.reason, conn.caller)
        thread = threading.Thread(
            target=self._handle,
            args=(conn.sock, peer),
            name="control-request",
            daemon=True,
        )
        thread.start()

    def _handle(self, sock: socket.socket, peer: Peer) -> None:
        try:
            server: Any = self  # what socketserver's handlers call "server"
            ControlHandler(sock, peer, server)
        except Exception:
            log.exception("control connection failed")
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            sock.close()


def _audit_refusal(core: Core, pid: int | None, uid: int) -> None:
    with core.store.transaction() as tx:
        tx.append_event(
            {
                "event": "control.refused",
                "peer": {"uid": uid, "pid": pid},
                "reason": "peer is not the daemon's OS user",
            }
        )
