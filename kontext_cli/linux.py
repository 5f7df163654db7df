"""The few Linux system calls ``kontext exec`` needs that Python 3.11's ``os`` lacks.

``prctl``, ``unshare``, ``mount``, ``umount2``, Landlock's three syscalls and one
seccomp filter (``deny_tiocsti``), called
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
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
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
MS_REC = 16384
MNT_DETACH = 2
# <linux/landlock.h>; the syscall numbers are the same on every architecture.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1
LANDLOCK_SCOPE_SIGNAL = 2
# <asm-generic/ioctls.h>: push one byte into a terminal's input queue.
TIOCSTI = 0x5412
# <linux/audit.h> architectures and their ioctl(2) numbers, per machine: its own and
# the compat ABIs it can run (x86_64 also runs i386 and x32, whose numbers carry
# bit 30; aarch64 runs arm). Only little-endian machines: the filter reads the low
# 32 bits of ioctl's second argument at seccomp_data offset 24.
TTY_FILTER = {
    "x86_64": ((0xC000003E, (16, 0x40000010, 0x40000202)), (0x40000003, (54,))),
    "aarch64": ((0xC00000B7, (29,)), (0x40000028, (54,))),
}


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


class _Char(_Scalar):
    _type_ = "c"


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


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    """One ``struct sock_filter`` instruction."""
    return code.to_bytes(2, sys.byteorder) + bytes((jt, jf)) + k.to_bytes(4, sys.byteorder)


def tiocsti_filter(machine: str) -> bytes:
    """A seccomp program: ``ioctl(fd, TIOCSTI, …)`` fails with EPERM, whatever the
    cmd's upper 32 bits (the tty layer reads an unsigned int: CVE-2019-10063's way
    around flatpak's filter); a syscall of an architecture not listed kills the process
    (a deny list must know every ABI); everything else is allowed."""
    ld_w, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET
    allow, kill, eperm = 0x7FFF0000, 0x80000000, 0x00050000 | 1
    arches = TTY_FILTER[machine]
    size = sum(3 + len(numbers) for _, numbers in arches) + 2  # up to the cmd check
    code = [_bpf(ld_w, 0, 0, 4)]  # seccomp_data.arch
    for arch, numbers in arches:
        code.append(_bpf(jeq, 0, 2 + len(numbers), arch))
        code.append(_bpf(ld_w, 0, 0, 0))  # seccomp_data.nr
        for number in numbers:
            code.append(_bpf(jeq, size - len(code) - 1, 0, number))
        code.append(_bpf(ret, 0, 0, allow))
    code.append(_bpf(ret, 0, 0, kill))
    assert len(code) == size
    code += [
        _bpf(ld_w, 0, 0, 24),  # the low 32 bits of args[1], ioctl's cmd
        _bpf(jeq, 0, 1, TIOCSTI),
        _bpf(ret, 0, 0, eperm),
        _bpf(ret, 0, 0, allow),
    ]
    return b"".join(code)


def deny_tiocsti(machine: str) -> None:
    """Install ``tiocsti_filter``: this process and every descendant can no longer type
    into a terminal (inherited across fork and execve, never removed). Needs
    ``PR_SET_NO_NEW_PRIVS`` first."""
    program = tiocsti_filter(machine)

    class Buffer(_ctypes.Array):  # type: ignore[misc,type-arg]
        _type_ = _Char
        _length_ = len(program)

    instructions = Buffer.from_buffer_copy(program)
    pointer = _ctypes.addressof(instructions)
    width = 8 if sys.maxsize > 2**32 else 4  # struct sock_fprog { u16 len; filter *; }
    fprog = (len(program) // 8).to_bytes(width, sys.byteorder) + pointer.to_bytes(
        width, sys.byteorder
    )
    result = _prctl(PR_SET_SECCOMP, _ULong(SECCOMP_MODE_FILTER), fprog, _ULong(0), _ULong(0))
    _check(result, "seccomp filter")
