"""The few Linux system calls ``kontext exec`` needs that Python 3.11's ``os`` lacks.

``prctl``, ``unshare``, ``mount``, ``umount2`` and Landlock's three syscalls, called
through ``_ctypes`` (the C module under ``ctypes``) with two hand-made function
types: importing ``ctypes`` itself costs ~2-4 ms of every exec, ``_ctypes`` ~0.5 ms
(bench/FINDINGS.md). Each call raises ``OSError`` with the kernel's errno.

Only ``kontext exec`` and ``kontext doctor`` import this, and only on Linux.
"""

from __future__ import annotations

import _ctypes
import os
import sys

# <linux/prctl.h>
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
# <linux/sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
# <linux/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MNT_DETACH = 2
# <linux/landlock.h>; the syscall numbers are the same on every architecture.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1
LANDLOCK_SCOPE_SIGNAL = 2


TYPE_CHECKING = False
if TYPE_CHECKING:
    _Scalar = _ctypes._SimpleCData[int]
else:
    _Scalar = _ctypes._SimpleCData


class _Int(_Scalar):
    _type_ = "i"


class _Long(_Scalar):
    _type_ = "l"


class _ULong(_Scalar):
    _type_ = "L"


class _IntFunc(_ctypes.CFuncPtr):  # type: ignore[misc]
    """A libc function returning int; errno is saved for ``_ctypes.get_errno``."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _LongFunc(_ctypes.CFuncPtr):  # type: ignore[misc]
    """``syscall(2)``, which returns long."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Long


_libc = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]  # NULL: this process
_prctl = _IntFunc(_ctypes.dlsym(_libc, "prctl"))
_unshare = _IntFunc(_ctypes.dlsym(_libc, "unshare"))
_mount = _IntFunc(_ctypes.dlsym(_libc, "mount"))
_umount2 = _IntFunc(_ctypes.dlsym(_libc, "umount2"))
_syscall = _LongFunc(_ctypes.dlsym(_libc, "syscall"))


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = _ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def prctl(option: int, arg: int = 0) -> None:
    # Unused arguments must be zero (prctl(2)); varargs are read as unsigned long.
    _check(_prctl(option, _ULong(arg), _ULong(0), _ULong(0), _ULong(0)), f"prctl({option})")


def unshare(flags: int) -> None:
    _check(_unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _mount(
            source.encode(),
            os.fsencode(target),
            fstype.encode() if fstype else None,
            _ULong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def umount2(target: str, flags: int) -> None:
    _check(_umount2(os.fsencode(target), flags), f"umount {target}")


def landlock_abi() -> int:
    """Landlock's ABI version (0: not in this kernel, or disabled at boot)."""
    version = _syscall(_Long(SYS_LANDLOCK_CREATE_RULESET), None, _ULong(0), _ULong(1))
    return max(0, int(version))


def landlock_scope(scoped: int) -> None:
    """Enter a new Landlock domain that handles no file or network right and scopes
    ``scoped`` (signals, abstract Unix sockets) to the domain (ABI >= 6).

    Needs ``PR_SET_NO_NEW_PRIVS`` (or CAP_SYS_ADMIN) first; the domain is inherited
    by every descendant and can never be left."""
    # struct landlock_ruleset_attr { u64 handled_access_fs, handled_access_net, scoped; }
    attr = bytes(16) + scoped.to_bytes(8, sys.byteorder)
    fd = _check(
        _syscall(_Long(SYS_LANDLOCK_CREATE_RULESET), attr, _ULong(len(attr)), _ULong(0)),
        "landlock_create_ruleset",
    )
    try:
        _check(
            _syscall(_Long(SYS_LANDLOCK_RESTRICT_SELF), _Long(fd), _ULong(0)),
            "landlock_restrict_self",
        )
    finally:
        os.close(fd)
