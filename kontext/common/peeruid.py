"""Which OS user is at the other end of a loopback TCP connection (Linux).

A Unix socket tells its peer's uid (SO_PEERCRED); TCP does not. On Linux the
kernel knows anyway: every socket records the uid that created it. This asks
the kernel for the socket at the other end of a connection, by its exact
address pair, the way ``ss -e`` and identd do:

1. ``NETLINK_SOCK_DIAG`` (``inet_diag``, linux/inet_diag.h): one exact-match
   lookup by (source, destination) address and port, no privilege needed; ~20 µs.
2. If netlink is unavailable, the matching line of ``/proc/net/tcp`` or ``tcp6``.

Races: ask while the connection is established (at accept, before reading a
byte). The peer socket cannot change hands to another uid's creation while our
end holds the 4-tuple, so one answer holds for the connection's life. A peer
that has already gone away gives ``None``, which callers treat as a stranger.
Elsewhere (macOS, BSD) ``supported()`` is False and every answer is ``None``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_REQUEST = struct.Struct("=BBBBI")  # inet_diag_req_v2 up to the socket id
_UID_OFFSET = 16 + 64  # nlmsghdr, then inet_diag_msg's uid (after id, expires, queues)
_INODE_OFFSET = _UID_OFFSET + 4  # idiag_inode follows idiag_uid
_NO_COOKIE = b"\xff" * 8  # INET_DIAG_NOCOOKIE


def supported() -> bool:
    """True where the peer's uid can be known (Linux)."""
    return sys.platform.startswith("linux")


def _address(host: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return socket.AF_INET, ip.packed + bytes(12)
    return socket.AF_INET6, ip.packed


def _sockid(peer: tuple[str, int], ours: tuple[str, int]) -> tuple[int, bytes]:
    family, src = _address(peer[0])
    _, dst = _address(ours[0])
    ports = struct.pack("!HH", peer[1], ours[1])
    return family, ports + src + dst + struct.pack("=I", 0) + _NO_COOKIE


def _by_netlink(peer: tuple[str, int], ours: tuple[str, int]) -> tuple[int, int] | None:
    family, sockid = _sockid(peer, ours)
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    message = _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.sendto(message + body, (0, 0))
        answer = nl.recv(8192)
    if len(answer) < _INODE_OFFSET + 4:
        return None
    kind = _HEADER.unpack_from(answer)[1]
    if kind != SOCK_DIAG_BY_FAMILY:  # NLMSG_ERROR: no such socket (it went away)
        return None
    uid, inode = struct.unpack_from("=II", answer, _UID_OFFSET)
    return int(uid), int(inode)


def _proc_hex(host: str, port: int) -> str:
    family, packed = _address(host)
    raw = packed[:4] if family == socket.AF_INET else packed
    # /proc/net/tcp prints each 32-bit word in host byte order.
    words = [raw[i : i + 4] for i in range(0, len(raw), 4)]
    text = "".join(w[::-1].hex().upper() if sys.byteorder == "little" else w.hex() for w in words)
    return f"{text}:{port:04X}"


def _by_proc(peer: tuple[str, int], ours: tuple[str, int]) -> tuple[int, int] | None:
    family, _ = _address(peer[0])
    table = "/proc/net/tcp" if family == socket.AF_INET else "/proc/net/tcp6"
    local, remote = _proc_hex(*peer), _proc_hex(*ours)
    with open(table) as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[7]), int(fields[9])
    return None


def peer_socket(peer: tuple[str, int], ours: tuple[str, int]) -> tuple[int, int] | None:
    """The uid that created the socket at ``peer`` connected to our ``ours``, and that
    socket's inode (which names it in ``/proc/PID/fd``); None if unknown."""
    if not supported():
        return None
    try:
        return _by_netlink(peer, ours)
    except OSError:
        pass
    try:
        return _by_proc(peer, ours)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def peer_uid(peer: tuple[str, int], ours: tuple[str, int]) -> int | None:
    """The uid owning the socket at ``peer`` connected to our ``ours``; None if unknown."""
    found = peer_socket(peer, ours)
    return None if found is None else found[0]


def of_socket(sock: socket.socket) -> int | None:
    """The peer uid of an accepted loopback TCP socket (see ``peer_uid``)."""
    try:
        peer, ours = sock.getpeername(), sock.getsockname()
    except OSError:
        return None
    return peer_uid((peer[0], peer[1]), (ours[0], ours[1]))


def own_user(sock: socket.socket) -> bool:
    """True when the peer of ``sock`` is this process's OS user — or where that cannot
    be known (not Linux), so callers there keep working; SECURITY.md says so."""
    if not supported():
        return True
    return of_socket(sock) == os.getuid()
