"""The control API's routes: HTTP/1.1 + JSON on a Unix socket, for this OS user only.

``kontextd.api.control_loop`` accepts connections, checks the peer's uid
(SO_PEERCRED/getpeereid) before a byte is read — other uids get one 403 line,
are disconnected and audited — and answers exec's lease requests itself. Every
other request reaches ``ControlHandler`` here, on a thread of its own, with the
bytes the loop already read. A connection that obtains a credential becomes that
credential's lease.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time
from typing import Any, ClassVar

from kontextd import agents, credentials, exec_tree, settings
from kontextd.api import gate
from kontextd.api.control_auth import AUTH_ROUTES, AuthRoutes
from kontextd.api.httpbase import Route, route
from kontextd.audit import requester, trail
from kontextd.callers import Caller
from kontextd.core import CALLER, Core
from kontextd.dashboard.access import LINK_TTL
from kontextd.errors import ApiError, invalid
from kontextd.gateway import admin as integrations_admin
from kontextd.policy import admin as policy_admin
from kontextd.store.audit_sql import AuditFilter

log = logging.getLogger("kontextd.control")
AUDIT_MAX_WAIT = 30.0
AUDIT_MAX_LIMIT = 10_000
REFUSAL = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: 78\r\n\r\n"
    b'{"error":{"code":"forbidden","message":"this daemon serves another OS user."}}'
)
assert len(REFUSAL.split(b"\r\n\r\n", 1)[1]) == 78

N = r"([a-z0-9][a-z0-9-]{0,62})"


class Peer:
    """What the loop hands a handler thread: the peer's pid (from the kernel), the
    bytes it already read from the connection, the leases the connection holds, and
    who the peer is if the loop already classified it."""

    __slots__ = ("caller", "leases", "pid", "prefix", "reason")

    def __init__(
        self,
        pid: int | None,
        prefix: bytes,
        leases: list[str],
        reason: str,
        caller: Caller | None = None,
    ) -> None:
        self.pid, self.prefix, self.leases, self.reason = pid, prefix, leases, reason
        self.caller = caller


class _Prefixed(io.RawIOBase):
    """Reads ``prefix`` first, then the socket: the handler's ``rfile`` after a hand-off."""

    def __init__(self, prefix: bytes, sock: socket.socket) -> None:
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._sock.recv_into(buffer)


class ControlHandler(AuthRoutes):
    """Routes of the control API (see ``kontext_cli.client`` for the caller side)."""

    server: Any  # kontextd.api.control_loop.ControlServer
    ROUTES: ClassVar[list[Route]] = [
        route("GET", r"/v1/status", "status"),
        route("POST", r"/v1/shutdown", "shutdown"),
        route("GET", r"/v1/config", "config_status"),
        route("POST", r"/v1/config/reload", "reload_config"),
        route("GET", r"/v1/agents", "list_agents"),
        route("POST", r"/v1/agents", "create_agent"),
        route("GET", rf"/v1/agents/{N}", "show_agent"),
        route("DELETE", rf"/v1/agents/{N}", "delete_agent"),
        route("POST", rf"/v1/agents/{N}/disable", "disable_agent"),
        route("POST", rf"/v1/agents/{N}/enable", "enable_agent"),
        route("POST", rf"/v1/agents/{N}/session-bus", "agent_session_bus"),
        route("POST", r"/v1/credentials", "issue_credential"),
        route("GET", r"/v1/credentials", "list_credentials"),
        route("POST", r"/v1/lease/child", "lease_child"),
        route("POST", r"/v1/lease/release", "lease_release"),
        route("POST", r"/v1/revoke", "revoke"),
        route("GET", r"/v1/audit", "audit"),
        route("POST", r"/v1/audit/checkpoint", "audit_checkpoint"),
        route("POST", r"/v1/audit/prune", "audit_prune"),
        route("GET", r"/v1/policy", "policy_status"),
        route("GET", r"/v1/policy/schema", "policy_schema"),
        route("POST", r"/v1/policy/reload", "policy_reload"),
        route("POST", r"/v1/policy/explain", "policy_explain"),
        route("POST", r"/v1/keys/rotate", "rotate_keys"),
        route("POST", r"/v1/dashboard/link", "dashboard_link"),
        route("GET", r"/v1/keys", "list_keys"),
        *AUTH_ROUTES,
        route("GET", r"/v1/integrations", "list_integrations"),
        route("POST", rf"/v1/integrations/{N}/secret", "connect_integration"),
        route("POST", rf"/v1/integrations/{N}/oauth/start", "integration_oauth_start"),
        route("POST", rf"/v1/integrations/{N}/oauth/finish", "integration_oauth_finish"),
        route("POST", rf"/v1/integrations/{N}/disconnect", "disconnect_integration"),
    ]

    def setup(self) -> None:
        super().setup()
        # The loop hands over the kernel-reported peer pid, what it read and the leases.
        peer: Peer = self.client_address  # type: ignore[assignment]
        self.peer_pid: int | None = peer.pid
        self._caller = peer.caller
        self.leases: list[str] = list(peer.leases)
        self.lease_reason = peer.reason
        if peer.prefix:
            self.rfile.close()  # the plain makefile() reader; the socket stays open
            self.rfile = io.BufferedReader(_Prefixed(peer.prefix, self.connection))
        if self.leases:
            self.connection.settimeout(None)  # the lease is this connection: no idle limit

    def address_string(self) -> str:
        return f"unix:pid={self.peer_pid}"

    @property
    def caller(self) -> Caller:
        """Who the peer is, from kernel facts (``kontextd.callers``), decided once."""
        if self._caller is None:
            self._caller = self.server.gate.caller(self.peer_pid)
        return self._caller

    def precheck(self) -> ApiError | None:
        """The second wall: a caller inside an agent's tree may do little (``api.gate``)."""
        CALLER.set(self.caller.to_json())
        self.server.gate.check(self.caller, str(self.command), self.path.partition("?")[0])
        return None

    @property
    def core(self) -> Core:
        core: Core = self.server.core
        return core

    def finish(self) -> None:
        """The connection is gone: every lease it held ends now."""
        try:
            super().finish()
        finally:
            # While stopping, Daemon.stop() revokes every live credential itself.
            if not self.core.stopping.is_set():
                for jti in self.leases:
                    credentials.end(self.core, jti, "revoked", self.lease_reason)
            self.core.trees.drop(self.leases)

    lease_reason = "lease closed: kontext exec went away"

    # -- daemon ---------------------------------------------------------------

    def status(self) -> None:
        info = self.server.status()
        self.send_json(200, info)

    def shutdown(self) -> None:
        self.send_json(200, {"stopping": True, "pid": os.getpid()})
        self.core.stopping.set()

    def config_status(self) -> None:
        self.send_json(200, settings.check(self.core))

    def reload_config(self) -> None:
        caller = {"pid": self.peer_pid, "via": "control API"}
        self.send_json(200, settings.reload(self.core, "kontext config reload", caller))

    # -- agents ---------------------------------------------------------------

    def list_agents(self) -> None:
        self.send_json(200, agents.listing(self.core))

    def create_agent(self) -> None:
        self.send_json(201, agents.create(self.core, self.read_json()))

    def show_agent(self, name: str) -> None:
        self.send_json(200, agents.show(self.core, name))

    def delete_agent(self, name: str) -> None:
        self.send_json(200, credentials.delete_agent(self.core, name))

    def disable_agent(self, name: str) -> None:
        self.send_json(
            200, credentials.revoke_agent(self.core, name, kill=False, reason="disabled by user")
        )

    def enable_agent(self, name: str) -> None:
        self.send_json(200, agents.set_enabled(self.core, name, enabled=True))

    def agent_session_bus(self, name: str) -> None:
        self.send_json(200, agents.set_session_bus(self.core, name, self.read_json()))

    # -- credentials and leases -----------------------------------------------

    def issue_credential(self) -> None:
        jti, issued = credentials.issue_for_exec(self.core, self.read_json(), self.peer_pid)
        self.leases.append(jti)
        self.core.trees.add(jti, str(issued["agent"]), self.peer_pid)
        # The lease is this connection: no idle timeout while it is held.
        self.connection.settimeout(None)
        self.send_json(201, issued)

    def list_credentials(self) -> None:
        agent = self.query.get("agent")
        rows = self.core.store.live_credentials(agents.validate_name(agent) if agent else None)
        self.send_json(
            200,
            {
                "credentials": [
                    {
                        "jti": c.jti,
                        "agent": f"agent:{c.agent}",
                        "scopes": list(c.scopes),
                        "target": c.target,
                        "issued_at": c.issued_at,
                        "expires_at": c.expires_at,
                        "pid": c.child_pid or c.wrapper_pid,
                        "kind": c.kind,
                        "client_id": c.client_id,
                        "parent": c.parent,
                        "grant": c.grant_id,
                    }
                    for c in rows
                ]
            },
        )

    def _held(self) -> str:
        if not self.leases:
            raise invalid("this connection holds no credential")
        return self.leases[-1]

    def lease_child(self) -> None:
        exec_tree.record_child(self.core, self._held(), self.read_json(), self.peer_pid)
        self.send_json(200, {"ok": True})

    def lease_release(self) -> None:
        self.lease_reason = credentials.release_reason(self.read_json().get("status"))
        for jti in self.leases:
            credentials.end(self.core, jti, "revoked", self.lease_reason)
        self.core.trees.drop(self.leases)  # the wrapper reaped its whole tree before releasing
        self.leases.clear()
        self.send_json(200, {"released": True})

    def revoke(self) -> None:
        body = self.read_json()
        caller = self.caller
        if not caller.trusted and (set(body) != {"jti"} or body["jti"] != caller.jti):
            error = gate.refusal(caller, "POST", "/v1/revoke (anything but its own credential)")
            self.server.gate.refused(caller, "POST", "/v1/revoke", error)
            raise error
        if "agent" in body:
            kill = body.get("kill", False)
            if not isinstance(kill, bool):
                raise invalid("kill must be true or false")
            result = credentials.revoke_agent(
                self.core,
                agents.name_from(body["agent"]),
                kill=kill,
                reason=f"revoked by {self.core.caller_name()}",
            )
        elif "jti" in body:
            result = credentials.revoke_credential(self.core, body["jti"])
        else:
            raise invalid("say what to revoke: agent or jti")
        self.send_json(200, result)

    # -- audit and keys -------------------------------------------------------

    def audit(self) -> None:
        flt = trail.query_filter(self.query)
        last = _int_param(self.query, "last", 0, AUDIT_MAX_LIMIT)
        if last:
            events = self.core.store.events_last(last, flt)
        else:
            after = _int_param(self.query, "after", 0, 2**62)
            limit = _int_param(self.query, "limit", 1, AUDIT_MAX_LIMIT, default=1000)
            wait = min(float(_int_param(self.query, "wait", 0, 3600)), AUDIT_MAX_WAIT)
            events = self._wait_events(after, limit, flt, wait)
        last_id = events[-1]["id"] if events else self.core.store.last_event_id()
        self.send_json(200, {"events": events, "last_id": last_id})

    def _wait_events(
        self, after: int, limit: int, flt: AuditFilter, wait: float
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait
        store = self.core.store
        with store.appended:
            while True:
                events = store.events_after(after, limit, flt)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0 or self.core.stopping.is_set():
                    return events
                store.appended.wait(min(remaining, 1.0))

    def audit_checkpoint(self) -> None:
        self.send_json(201, trail.make_checkpoint(self.core))

    def audit_prune(self) -> None:
        asking = requester.of(self.core, self.peer_pid)  # kernel facts: kontextd.callers
        self.send_json(200, trail.prune(self.core, self.read_json().get("before"), asking))

    # -- org policy -----------------------------------------------------------

    def policy_status(self) -> None:
        self.send_json(200, policy_admin.check(self.core))

    def policy_schema(self) -> None:
        self.send_json(200, policy_admin.schema(self.core))

    def policy_reload(self) -> None:
        self.send_json(200, policy_admin.reload(self.core, "kontext policy reload"))

    def policy_explain(self) -> None:
        self.send_json(200, policy_admin.explain(self.core, self.read_json(), self.peer_pid))

    def rotate_keys(self) -> None:
        self.core.secrets_check()
        now = self.read_json().get("now", False)
        if not isinstance(now, bool):
            raise invalid("now must be true or false")
        grace = 0 if now else self.core.config.rotation_grace
        rotation = self.core.keys.rotate(grace).to_json()
        with self.core.store.transaction() as tx:
            tx.append_event({"event": "key.rotated", **rotation, "user": self.core.user_ref()})
        self.send_json(200, rotation)

    def list_keys(self) -> None:
        self.send_json(200, self.core.keys.jwks())

    # -- the dashboard (kontextd.dashboard) -------------------------------------

    def dashboard_link(self) -> None:
        """A one-time link that opens the dashboard in a browser (``kontext dashboard``)."""
        secret = self.core.dashboard.new_link()
        self.send_json(
            201,
            {"url": f"{self.core.issuer}/dashboard/open?t={secret}", "expires_in": LINK_TTL},
        )

    # -- integrations (kontextd.gateway.admin) ---------------------------------

    def list_integrations(self) -> None:
        self.send_json(200, integrations_admin.listing(self.core))

    def connect_integration(self, name: str) -> None:
        self.core.secrets_check()
        self.send_json(200, integrations_admin.connect_secret(self.core, name, self.read_json()))

    def integration_oauth_start(self, name: str) -> None:
        self.send_json(200, integrations_admin.oauth_start(self.core, name, self.read_json()))

    def integration_oauth_finish(self, name: str) -> None:
        self.core.secrets_check()
        self.send_json(200, integrations_admin.oauth_finish(self.core, name, self.read_json()))

    def disconnect_integration(self, name: str) -> None:
        self.send_json(200, integrations_admin.disconnect(self.core, name))


def _int_param(query: dict[str, str], name: str, low: int, high: int, default: int = 0) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise invalid(f"{name} must be a whole number between {low} and {high}")
    return int(raw)
