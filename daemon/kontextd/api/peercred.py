"""Who is on the other end of a Unix socket: SO_PEERCRED (Linux), getpeereid (BSD/macOS)."""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
import sys


def peer(sock: socket.socket) -> tuple[int | None, int]:
    """(pid or None, uid) of the connected peer; the kernel vouches for both."""
    if sys.platform.startswith("linux"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", raw)
        return pid, uid
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if libc.getpeereid(sock.fileno(), ctypes.byref(uid), ctypes.byref(gid)) != 0:
        raise OSError(ctypes.get_errno(), "getpeereid failed")
    return None, uid.value
