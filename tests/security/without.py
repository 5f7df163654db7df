"""Run a command on a kernel that lacks a confinement primitive, as far as it can tell.

``python without.py userns|landlock -- CMD ARGS`` installs a seccomp filter that
answers ``unshare(2)`` with EPERM (as Ubuntu's AppArmor restriction, a sysctl or
a container's seccomp profile do), or the Landlock syscalls with ENOSYS (an older
kernel), then execs CMD. Everything CMD starts inherits the filter. A test
helper only: kontext itself never installs a filter.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct
import sys

# Syscall numbers and the seccomp audit arch, per machine.
UNSHARE = {"x86_64": 272, "aarch64": 97}
ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
LANDLOCK = (444, 445, 446)
EPERM, ENOSYS = 1, 38
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
LD_ABS_W, JEQ_K, RET_K = 0x20, 0x15, 0x06


def instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine: str, what: str) -> bytes:
    """Deny the chosen syscalls; allow everything else (and other architectures' calls)."""
    numbers, errno = ((UNSHARE[machine],), EPERM) if what == "userns" else (LANDLOCK, ENOSYS)
    code = [
        instruction(LD_ABS_W, 0, 0, 4),  # seccomp_data.arch
        instruction(JEQ_K, 1, 0, ARCH[machine]),
        instruction(RET_K, 0, 0, RET_ALLOW),
        instruction(LD_ABS_W, 0, 0, 0),  # seccomp_data.nr
    ]
    for number in numbers:
        code += [instruction(JEQ_K, 0, 1, number), instruction(RET_K, 0, 0, RET_ERRNO | errno)]
    code.append(instruction(RET_K, 0, 0, RET_ALLOW))
    return b"".join(code)


def main() -> None:
    what, separator, *command = sys.argv[1:]
    assert separator == "--" and what in ("userns", "landlock"), sys.argv
    machine = platform.machine()
    filt = program(machine, what)
    buffer = ctypes.create_string_buffer(filt)
    fprog = struct.pack("HxxxxxxP", len(filt) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, which a filter needs
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    raw = ctypes.create_string_buffer(fprog)
    if libc.prctl(22, 2, raw, 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
