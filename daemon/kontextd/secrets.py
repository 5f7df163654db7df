"""Secret storage: the OS keyring, or a 0600 file where no keyring backend works.

The fallback is never silent: the daemon announces it once on start (stderr and
log) and ``status`` reports it; ``secrets.fallback = "refuse"`` makes it an error.
Keyring calls run with a timeout because a locked or wedged Secret Service can
block forever.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from typing import Any

from kontext.common import wire
from kontextd.errors import ApiError

log = logging.getLogger("kontextd.secrets")
KEYRING_TIMEOUT = 5.0


class SecretsUnavailable(RuntimeError, ApiError):
    """No secret storage may be used: no keyring backend and the fallback is refused,
    or the keyring did not answer. Over the API it is a 503 ``secrets`` error."""

    def __init__(self, message: str) -> None:
        ApiError.__init__(self, wire.SECRETS, message)


class SecretStore:
    """Get and put named secrets for one ``KONTEXT_HOME``."""

    def __init__(self, secrets_dir: str, namespace_seed: str, fallback: str) -> None:
        self._dir = secrets_dir
        # One keyring serves every KONTEXT_HOME of this user; keep them apart.
        self._service = "kontext/" + hashlib.sha256(namespace_seed.encode()).hexdigest()[:16]
        self._keyring = _working_keyring()
        self.fallback_policy = fallback
        if self._keyring is None and fallback == "refuse":
            raise SecretsUnavailable(
                "no OS keyring backend works here and secrets.fallback is 'refuse'; "
                "install a Secret Service (e.g. gnome-keyring) or run "
                "'kontext config set secrets.fallback allow'"
            )

    @property
    def backend(self) -> str:
        """``keyring:<backend name>`` or ``file:<dir>`` (the fallback)."""
        if self._keyring is not None:
            return f"keyring:{type(self._keyring).__name__}"
        return f"file:{self._dir}"

    @property
    def is_fallback(self) -> bool:
        return self._keyring is None

    def put(self, name: str, value: str) -> None:
        if self._keyring is not None:
            _with_timeout(self._keyring.set_password, self._service, name, value)
            return
        self._ensure_dir()
        path = os.path.join(self._dir, name)
        # O_EXCL|0600 from the start: the secret never exists with wider permissions.
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())  # on the disk before it replaces the old one
        os.replace(tmp, path)

    def get(self, name: str) -> str | None:
        if self._keyring is not None:
            value: str | None = _with_timeout(self._keyring.get_password, self._service, name)
            return value
        try:
            fd = os.open(os.path.join(self._dir, name), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        with os.fdopen(fd) as fh:
            return fh.read()

    def delete(self, name: str) -> None:
        if self._keyring is not None:
            try:
                _with_timeout(self._keyring.delete_password, self._service, name)
            except Exception:  # already gone is fine; keyring raises its own type
                log.debug("keyring had no %s to delete", name)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._dir, name))

    def _ensure_dir(self) -> None:
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        st = os.lstat(self._dir)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise SecretsUnavailable(
                f"{self._dir} must be a directory owned by you with mode 0700; fix with "
                f"'chmod 700 {self._dir}'"
            )


def _with_timeout(fn: Any, *args: Any) -> Any:
    # A daemon thread, not a thread pool: a pool's workers are joined at interpreter
    # exit, so one call that never returns kept a failed or stopped kontextd alive.
    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append((True, fn(*args)))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))

    worker = threading.Thread(target=call, name="keyring-call", daemon=True)
    worker.start()
    worker.join(KEYRING_TIMEOUT)
    if not outcome:
        raise SecretsUnavailable(
            f"the OS keyring did not answer within {KEYRING_TIMEOUT:.0f}s (is it locked?)"
        )
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _working_keyring() -> Any:
    """The keyring backend, or None when only the 'fail' or 'null' backends exist."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken backend config: treat as no keyring
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    if type(backend).__name__ == "ChainerBackend" and not getattr(backend, "backends", None):
        return None
    return backend
