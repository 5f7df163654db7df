"""The daemon's life: start-up checks, the two servers, the reaper, clean shutdown."""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from kontext import __version__
from kontext.common import config as config_mod
from kontext.common import wire
from kontext.common.paths import MAX_SOCKET_PATH, Paths
from kontextd import credentials, runtime, settings
from kontextd.api.control_loop import ControlServer
from kontextd.api.loopback import LoopbackServer
from kontextd.audit import pinning, trail
from kontextd.audit.anchor import AnchorInvalid, AnchorStore
from kontextd.core import Core
from kontextd.federation import session as federation
from kontextd.oauth import session as login_session
from kontextd.oauth import state as oauth_state
from kontextd.policy import admin as policy_admin
from kontextd.policy import loader as policy_loader
from kontextd.secrets import SecretStore, SecretsUnavailable
from kontextd.store import presence
from kontextd.store.db import Store, StoreError
from kontextd.tokens.keys import KeyRing

log = logging.getLogger("kontextd")
REAP_INTERVAL = 0.25
POLICY_POLL_TICKS = 4
PORT_FILE = "http-port"


class StartupError(RuntimeError):
    """The daemon cannot start; the message is one line for the user."""


class ConfigInvalid(StartupError):
    """config.toml is invalid: exit with ``wire.EXIT_CONFIG_INVALID`` so the starter says so."""


class AlreadyRunning(StartupError):
    """Another kontextd holds this home's lock: exit ``wire.EXIT_ALREADY_RUNNING``."""


def _setup_logging(paths: Paths) -> None:
    os.makedirs(paths.logs, mode=0o700, exist_ok=True)
    handler = logging.FileHandler(paths.log_file)
    os.chmod(paths.log_file, 0o600)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("kontextd")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if os.environ.get("KONTEXT_DEBUG") else logging.INFO)


def _preferred_port(paths: Paths) -> int:
    """Reuse last run's port so the issuer string stays the same across restarts."""
    with contextlib.suppress(OSError, ValueError), open(os.path.join(paths.data, PORT_FILE)) as fh:
        return int(fh.read().strip())
    return 0


def _bind_loopback(paths: Paths, core: Core) -> LoopbackServer:
    port = _preferred_port(paths)
    try:
        server = LoopbackServer(port, core)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or port == 0:
            raise
        server = LoopbackServer(0, core)
    with open(os.path.join(paths.data, PORT_FILE), "w") as fh:
        fh.write(str(server.server_address[1]))
    return server


class Daemon:
    """One running kontextd."""

    def __init__(self, paths: Paths, *, new_database: bool = False) -> None:
        self.paths = paths
        self.started = time.time()
        self.notices: list[str] = []  # for stderr (the starting CLI relays them) and the log
        self.logged: list[str] = []  # for the log only
        self.lock: runtime.InstanceLock | None = None
        self.new_database = new_database
        self.abandoned: dict[str, Any] | None = None

    def prepare(self) -> None:
        """Everything that can fail for a user-fixable reason, before serving."""
        # Every file we create is private; SQLite's -wal and -shm (the same rows
        # as the database) would otherwise be born 0644 beside a 0600 database.
        os.umask(0o077)
        if len(self.paths.socket) > MAX_SOCKET_PATH:
            raise StartupError(
                f"socket path {self.paths.socket} is too long for a Unix socket; "
                "use a shorter KONTEXT_HOME"
            )
        for directory in (self.paths.runtime, self.paths.data, self.paths.logs):
            runtime.secure_dir(directory)
        self.lock = runtime.InstanceLock(self.paths.lock)
        if not self.lock.acquire():
            raise AlreadyRunning(
                f"kontextd is already running for this KONTEXT_HOME (pid {self.lock.holder()})"
            )
        _setup_logging(self.paths)
        self.dumpable_off = runtime.make_non_dumpable()
        runtime.raise_open_file_limit()

    def open(self) -> Core:
        try:
            cfg = config_mod.load(self.paths.config_file)
        except config_mod.ConfigError as exc:
            raise ConfigInvalid(str(exc)) from exc
        secrets = SecretStore(self.paths.secrets, self.paths.data, cfg.secrets_fallback)
        if secrets.is_fallback:
            # Said once per home, when the files are first made (each start logs it;
            # 'daemon status' and 'doctor' always say it): not at every auto-start.
            notices = self.notices if not os.path.isdir(self.paths.secrets) else self.logged
            notices.append(
                "no OS keyring backend works here: secrets are kept in 0600 files under "
                f"{self.paths.secrets} (refuse this with "
                "'kontext config set secrets.fallback refuse')"
            )
        ignored = policy_loader.system_dir().ignored
        if ignored is not None:
            self.notices.append(ignored)
        anchors = AnchorStore(secrets)
        self.abandoned = self._check_database(anchors)
        store = Store(self.paths.database)
        keys = KeyRing(store, secrets)
        core = Core(self.paths, cfg, store, secrets, keys, issuer="", anchors=anchors)
        self.loopback = _bind_loopback(self.paths, core)
        core.issuer = f"http://127.0.0.1:{self.loopback.server_address[1]}"
        keys.resume()  # finish an interrupted rotation; load (or make) the keys now
        settings.started(core)
        lost = pinning.start(core)  # the audit trust anchor: pin the key, check the log
        if lost is not None:
            self.notices.append(lost)
        runtime.remove_quietly(self.paths.socket)  # a stale socket: the lock proves no owner
        self.control = ControlServer(self.paths.socket, core, self.status)
        self.core = core
        return core

    def _check_database(self, anchors: AnchorStore) -> dict[str, Any] | None:
        """Never a new empty database silently where one with history is missing."""
        try:
            anchor: Any = anchors.load()
        except AnchorInvalid:
            anchor = "unreadable"  # something was pinned here: there was a log
        abandoned = presence.check_missing(self.paths.database, anchor, self.new_database)
        if abandoned is not None:
            anchors.discard()  # the pins named the old log; the new one pins afresh
        return abandoned

    def status(self) -> dict[str, Any]:
        core = self.core
        return {
            "pid": os.getpid(),
            "version": __version__,
            "issuer": core.issuer,
            "port": self.loopback.server_address[1],
            "socket": self.paths.socket,
            "started_at": self.started,
            "user": core.user,
            "secrets": core.secrets.backend,
            "secrets_fallback": core.secrets.is_fallback,
            "signing_kid": core.keys.active().kid,
            "live_credentials": len(core.store.live_credentials()),
            "non_dumpable": self.dumpable_off,
            "database": {"path": core.store.path, "lost": core.store.file.check()},
        }

    def serve(self) -> None:
        core = self.core
        orphans = credentials.revoke_orphans(core)
        login_session.start(core)  # the issuer's client secret, the session's user
        if self.abandoned is not None:
            with core.store.transaction() as tx:
                tx.append_event(
                    {
                        "event": "store.recreated",
                        "path": self.paths.database,
                        "reason": "the database was missing; started anew with --new-database",
                        "abandoned": self.abandoned,
                    }
                )
        with core.store.transaction() as tx:
            tx.append_event(
                {
                    "event": "daemon.started",
                    "pid": os.getpid(),
                    "issuer": core.issuer,
                    "version": __version__,
                    "orphans_revoked": orphans,
                    "policy": policy_admin.started_record(core),
                }
            )
        runtime.publish(
            self.paths.http_info,
            {"port": self.loopback.server_address[1], "issuer": core.issuer, "pid": os.getpid()},
        )
        core.store.checkpoint_elsewhere()  # the reaper checkpoints (Store.checkpoint_if_due)
        _settle_heap()
        threads = [
            threading.Thread(target=self.control.serve_forever, name="control", daemon=True),
            threading.Thread(target=self.loopback.serve_forever, name="loopback", daemon=True),
            threading.Thread(target=self._reap, name="reaper", daemon=True),
        ]
        for thread in threads:
            thread.start()
        log.info("kontextd %s serving pid=%s issuer=%s", __version__, os.getpid(), core.issuer)

    def _reap(self) -> None:
        ticks = 0
        failing_since = 0.0  # when the WAL checkpoint last failed and said so
        while not self.core.stopping.wait(REAP_INTERVAL):
            ticks += 1
            try:
                credentials.expire_due(self.core)
                oauth_state.for_core(self.core).sweep()  # unanswered consent pages, audited
                federation.end_due(self.core)  # a CI session ends with its token's time
                trail.maybe_checkpoint(self.core)
                self.core.keys.tick(time.time())
                if ticks % POLICY_POLL_TICKS == 0:  # config and policy: stat about once a second
                    self.core.store.file.check()  # removed or replaced under us: say so now
                    settings.reload_if_changed(self.core)
                    policy_admin.reload_if_changed(self.core)
            except Exception:
                log.exception("reaper failed; retrying")
            try:  # on its own: a failing checkpoint (disk full) must not stop the rest
                self.core.store.checkpoint_if_due()  # the WAL, off the loop's commits
                failing_since = 0.0
            except Exception:  # retried every tick; said once a minute (a full disk)
                if time.monotonic() - failing_since >= 60:
                    failing_since = time.monotonic()
                    log.exception("WAL checkpoint failed; retrying")

    def wait(self) -> None:
        while not self.core.stopping.wait(3600):
            pass

    def stop(self) -> None:
        """Stop serving, end every lease, record it, and remove the socket and port file."""
        core = self.core
        self.control.shutdown()
        self.loopback.shutdown()
        try:
            for cred in core.store.live_credentials():
                credentials.end(core, cred.jti, "revoked", "the daemon stopped")
            with core.store.transaction() as tx:
                tx.append_event({"event": "daemon.stopped", "pid": os.getpid()})
            trail.checkpoint_at_stop(core)  # nothing is left unsigned while the daemon is away
        except StoreError as exc:  # a full disk, a removed database: stop all the same
            log.warning("could not record the stop: %s", exc)
        runtime.remove_quietly(self.paths.socket, self.paths.http_info)
        self.control.server_close()
        self.loopback.server_close()
        core.store.close()
        log.info("kontextd stopped")


def _settle_heap() -> None:
    """Put what start-up made in the collector's permanent generation.

    ~40,000 objects (modules, functions, types) live as long as the daemon, and every
    full collection walked them all with the GIL held: under `/token` load one came
    every few seconds and stopped the loop for 35-100 ms (a gc callback's timing in
    the daemon; 11-16 ms in an idle process). Frozen, they are not walked again
    (20-26 ms measured after, the rest being what requests left); reference counting
    still frees everything that is not a cycle, frozen or not.
    """
    gc.collect()
    gc.freeze()


def run(paths: Paths, *, detach_stderr: bool = False, new_database: bool = False) -> int:
    """Run in the foreground until SIGTERM/SIGINT or ``kontext daemon stop``.

    ``new_database``: start with a new empty database where this home's is missing
    (refused otherwise, ``store.presence``)."""
    daemon = Daemon(paths, new_database=new_database)
    try:
        daemon.prepare()
        core = daemon.open()
    except ConfigInvalid as exc:
        print(f"kontextd: {exc}", file=sys.stderr)
        return wire.EXIT_CONFIG_INVALID
    except AlreadyRunning as exc:
        print(f"kontextd: {exc}", file=sys.stderr)
        return wire.EXIT_ALREADY_RUNNING
    except SecretsUnavailable as exc:
        print(f"kontextd: {exc}", file=sys.stderr)
        return wire.EXIT_SECRETS
    except (StartupError, runtime.RuntimeDirError, StoreError, presence.MissingHistory) as exc:
        print(f"kontextd: {exc}", file=sys.stderr)
        return wire.EXIT_CANNOT_START
    except Exception as exc:
        log.exception("start-up failed")
        print(f"kontextd: cannot start: {exc}", file=sys.stderr)
        return wire.EXIT_BUG
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: core.stopping.set())
    try:
        daemon.serve()
    except StoreError as exc:  # e.g. the disk filled up between opening and serving
        print(f"kontextd: {exc}", file=sys.stderr)
        return wire.EXIT_CANNOT_START
    for notice in daemon.logged:
        log.warning("%s", notice)
    for notice in daemon.notices:
        log.warning("%s", notice)
        print(f"kontextd: {notice}", file=sys.stderr)
    print(f"kontextd: ready (pid {os.getpid()}, {core.issuer})", file=sys.stderr, flush=True)
    if detach_stderr:
        # The starter reads our stderr until it closes: that is the "ready" signal.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    daemon.wait()
    daemon.stop()
    return 0
