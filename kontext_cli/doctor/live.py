"""Checks that ask the running daemon: versions, secrets, loopback port, policy, session, clock.

None of them starts kontextd: when it is not running they say so and skip.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any

from kontext.common import config as config_mod
from kontext.common.paths import Paths
from kontext_cli import __version__, client, errors, service, spawn
from kontext_cli.doctor import Check, fail, ok, skip, warn

NOT_RUNNING = "kontextd is not running"
# A wall clock before this cannot be right (kontext did not exist yet).
CLOCK_FLOOR = 1735689600  # 2025-01-01T00:00:00Z
CLOCK_SLACK = 120.0  # seconds an audit event may seem to be from the future
SESSION_ROUTES = ("/v1/session",)
RESTART = "kontext doctor --fix (or: kontext daemon stop && kontext daemon start)"


@dataclass
class Probe:
    """The daemon as found: a connection and its status, or why there is none."""

    check: Check
    conn: client.Connection | None = None
    status: dict[str, Any] | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def probe(where: Paths) -> Probe:
    conn = None
    try:
        conn = client.try_connect(where)
        if conn is None:
            return Probe(
                warn("daemon", f"{NOT_RUNNING} (commands start it on demand)", _start_fix())
            )
        status = conn.call("GET", "/v1/status")
    except errors.KontextError as exc:  # another user's daemon, a socket path too long, ...
        if conn is not None:
            conn.close()
        fix = "kontext daemon stop && kontext daemon start"
        return Probe(fail("daemon", exc.diagnostics(), fix))
    detail = f"kontextd {status.get('version')} is running (pid {status.get('pid')})"
    return Probe(ok("daemon", detail), conn, status)


def _start_fix() -> str:
    return "kontext daemon start, or start it with your session: kontext daemon install"


def versions(found: Probe) -> Check:
    if found.status is None:
        return skip("versions", NOT_RUNNING)
    running = str(found.status.get("version"))
    if running != __version__:
        return fail(
            "versions",
            f"kontextd {running} is running but this kontext is {__version__} "
            "(a daemon left over from before an upgrade)",
            f"restart it: {RESTART}; live credentials are revoked",
        )
    return ok("versions", f"kontext and kontextd are both {__version__}")


def secrets(found: Probe, where: Paths) -> Check:
    if found.status is not None:
        backend = str(found.status.get("secrets"))
        if not found.status.get("secrets_fallback"):
            return ok("keyring", f"secrets are in the OS keyring ({backend})")
        return _fallback(backend.removeprefix("file:"))
    from kontextd.secrets import _working_keyring

    backend = _working_keyring()
    if backend is not None:
        return ok("keyring", f"an OS keyring works here ({type(backend).__name__})")
    try:
        refused = config_mod.load(where.config_file).secrets_fallback == "refuse"
    except config_mod.ConfigError:
        refused = False
    if refused:
        return fail(
            "keyring",
            "no OS keyring backend works here and secrets.fallback is 'refuse': "
            "kontextd cannot start",
            "install a Secret Service (e.g. gnome-keyring), or allow the 0600-file "
            "fallback: kontext config set secrets.fallback allow",
        )
    return _fallback(where.secrets)


def _fallback(directory: str) -> Check:
    return warn(
        "keyring",
        f"no OS keyring backend works here: secrets are kept in 0600 files under {directory}",
        "install a Secret Service (e.g. gnome-keyring), or forbid the fallback: "
        "kontext config set secrets.fallback refuse",
    )


def loopback(found: Probe, where: Paths) -> Check:
    if found.status is None:
        return skip("loopback", NOT_RUNNING)
    port, issuer = found.status.get("port"), found.status.get("issuer")
    try:
        with open(where.http_info, encoding="utf-8") as fh:
            published = json.load(fh)
    except (OSError, ValueError):
        published = {}
    if published.get("port") != port:
        return fail("loopback", f"{where.http_info} does not name port {port}", RESTART)
    try:
        metadata = _get_json(int(port), "/.well-known/oauth-authorization-server")
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return fail("loopback", f"127.0.0.1:{port} does not answer: {exc}", RESTART)
    if metadata.get("issuer") != issuer:
        return fail("loopback", f"127.0.0.1:{port} is not this kontextd ({issuer})", RESTART)
    return ok("loopback", f"{issuer} answers (RFC 8414 metadata)")


def _get_json(port: int, path: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
        answer = conn.getresponse()
        if answer.status != 200:
            raise ValueError(f"HTTP {answer.status} for {path}")
        body = json.loads(answer.read())
    finally:
        conn.close()
    return body if isinstance(body, dict) else {}


def policy(found: Probe) -> Check:
    if found.conn is None:
        return skip("policy", NOT_RUNNING)
    status, body = found.conn.request("GET", "/v1/policy")
    if status != 200 or not isinstance(body, dict):
        return skip("policy", "this kontextd has no org-policy layer")
    problems = body.get("errors") or []
    if problems:
        return fail(
            "policy",
            f"{len(problems)} error(s), so every credential is denied: {problems[0]}",
            "fix the file and line named (kontext policy check lists every error)",
        )
    ignored = body.get("system_dir_ignored")
    if ignored:
        return warn(
            "policy",
            str(ignored),
            "unset KONTEXT_SYSTEM_POLICY_DIR, or point it at a directory only root can change",
        )
    files = body.get("files") or []
    if not files:
        return ok("policy", "no org policy files: the org layer allows")
    return ok("policy", f"{len(files)} policy file(s), {len(body.get('policies') or {})} policies")


def session(found: Probe) -> Check:
    """The login session, if this kontext has logins (and the daemon a route for them)."""
    if found.conn is None:
        return skip("session", NOT_RUNNING)
    for route in SESSION_ROUTES:
        status, body = found.conn.request("GET", route)
        if status == 405 or (status == 404 and _route_missing(body)):
            continue
        return _session_check(status, body)
    return skip("session", "this kontext has no login")


def _route_missing(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    return message.startswith("no such endpoint") or not message


def _session_check(status: int, body: Any) -> Check:
    info = body if isinstance(body, dict) else {}
    user, issuer = info.get("user") or info.get("sub"), info.get("issuer")
    if status >= 400 or not user:
        return warn("session", f"the daemon could not say ({status})", "kontext whoami")
    if not issuer:
        return ok("session", f"not logged in: acting as the local account {user}")
    if info.get("logged_in") is False:
        ended = info.get("ended") or "ended"
        detail = f"the session of {user} at {issuer} is over ({ended})"
        return warn("session", detail, "kontext login")
    expires = info.get("expires_at")
    if isinstance(expires, int | float):
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(expires))
        return ok("session", f"logged in as {user} at {issuer} (until {until})")
    return ok("session", f"logged in as {user} at {issuer}")


def clock(found: Probe, where: Paths) -> Check:
    now = time.time()
    if now < CLOCK_FLOOR:
        return fail("clock", f"the clock says {time.ctime(now)}", "set the date and time")
    newest = _newest_event_time(found)
    if newest is not None and newest - now > CLOCK_SLACK:
        return fail(
            "clock",
            f"the clock went back: the newest audit event is {newest - now:.0f}s in the future "
            "(credential lifetimes are measured by this clock)",
            "set the clock right (e.g. timedatectl set-ntp true), then restart kontextd",
        )
    return ok("clock", f"{time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(now))}")


def _newest_event_time(found: Probe) -> float | None:
    if found.conn is None:
        return None
    status, body = found.conn.request("GET", "/v1/audit?last=1")
    events = body.get("events") if status == 200 and isinstance(body, dict) else None
    if not events:
        return None
    ts = events[-1].get("ts")
    return float(ts) if isinstance(ts, int | float) else None


def restart(where: Paths) -> str:
    """Stop the running daemon and start this version's; returns what was done.

    Under a service manager the restart is its job (it would otherwise restart
    the old daemon's unit, or see a crash); otherwise stop it and start ours.
    """
    kind = service.platform_kind()
    unit = service.Unit(kind=kind, path=service.unit_path(kind), text="")
    if unit.is_running():
        failure = service.run_all(unit.restart())
        if failure:
            raise errors.DaemonUnavailable(f"could not restart kontextd: {failure}")
        return _wait_for_version(where, f"restarted kontextd with {' '.join(unit.restart()[0])}")
    conn = client.try_connect(where)
    if conn is None:
        pid = spawn.start_background(where, announce=False)
        return f"started kontextd (pid {pid})"
    with conn:
        old = conn.call("POST", "/v1/shutdown")["pid"]
    deadline = time.monotonic() + 10
    while (other := client.try_connect(where)) is not None:
        other.close()
        if time.monotonic() > deadline:
            raise errors.DaemonUnavailable(f"kontextd (pid {old}) did not stop within 10s")
        time.sleep(0.05)
    pid = spawn.start_background(where, announce=False)
    return f"restarted kontextd {__version__} (pid {old} -> {pid})"


def _wait_for_version(where: Paths, done: str) -> str:
    """Wait until a kontextd of this version answers (a service manager starts it)."""
    deadline = time.monotonic() + spawn.START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            conn = client.try_connect(where)
            if conn is not None:
                with conn:
                    if conn.call("GET", "/v1/status").get("version") == __version__:
                        return done
        except errors.DaemonUnavailable:
            pass  # the old one is going away, or the new one is not serving yet
        time.sleep(0.1)
    raise errors.DaemonUnavailable(f"kontextd {__version__} did not answer after the restart")
