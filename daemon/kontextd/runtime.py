"""The daemon's runtime directory: checked modes, the single-instance lock, the port file.

The runtime directory must be a real directory (not a symlink) owned by this uid
with mode 0700: the socket's safety rests on it as much as on the socket's own mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from typing import Any


class RuntimeDirError(RuntimeError):
    """A directory kontextd needs is unsafe or unusable; the message says how to fix it."""


def secure_dir(path: str) -> None:
    """Create ``path`` 0700 if missing; refuse a symlink, a foreign owner or loose modes."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError(f"{path} is not a plain directory (a symlink?); remove it and retry")
    if st.st_uid != os.getuid():
        raise RuntimeDirError(f"{path} belongs to uid {st.st_uid}, not you; remove it and retry")
    if st.st_mode & 0o077:
        raise RuntimeDirError(
            f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"fix with 'chmod 700 {path}'"
        )


class InstanceLock:
    """An flock on ``kontextd.lock``: one daemon per KONTEXT_HOME.

    The kernel drops the lock when the holder dies, so a crashed daemon never
    blocks the next one, and holding it proves any socket file left behind is stale.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)

    def acquire(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        return True

    def holder(self) -> str:
        with contextlib.suppress(OSError):
            return os.pread(self._fd, 32, 0).decode().strip() or "?"
        return "?"

    def release(self) -> None:
        os.close(self._fd)


def publish(path: str, info: dict[str, Any]) -> None:
    """Write the port file atomically (readers never see half of it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, path)


def remove_quietly(*paths: str) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def make_non_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0): no core dumps, and /proc/PID/environ and mem
    become unreadable to other processes of the same uid."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_dumpable = 4
        return bool(libc.prctl(pr_set_dumpable, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def raise_open_file_limit(ceiling: int = 65536) -> int:
    """Lift the soft RLIMIT_NOFILE towards the hard limit: every connection is a file,
    and at a desktop's usual 1,024 a thousand idle clients starved new commands and
    the reaper (EMFILE). Returns the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
    return soft
