"""The control-API client: HTTP/1.1 + JSON over the daemon's Unix socket.

Deliberately tiny and standard-library only — ``kontext exec`` uses it on every
run, and one request/response exchange must cost a fraction of a millisecond.
The daemon always answers with ``Content-Length``; nothing else is needed.
It uses ``_socket``, the C module under ``socket``: ``socket.py`` also imports
``selectors`` and builds its enums, ~2 ms of every ``kontext exec`` for
nothing this client calls (connect, sendall, recv and close are all C). JSON
goes through ``wirejson`` (``_json``'s C scanner and encoder): ``json`` imports
``re``.

Two guards before a request is sent. The socket must be this user's: its file
is owned by our uid, and after connecting the kernel says (``SO_PEERCRED``) the
process serving it runs as our uid — another user who made the runtime
directory first cannot pose as kontextd. And the daemon must answer: connect,
send and every read have a deadline (``KONTEXT_DAEMON_TIMEOUT``, default 30 s,
stretched by a long poll's ``wait=``), so a stopped or wedged daemon is one
line, never a hang. The deadline applies to each call only: a connection that
holds an exec's lease sits idle, unbounded, while the command runs.
"""

from __future__ import annotations

import _socket
import os
import sys

from kontext.common.paths import MAX_SOCKET_PATH, Paths
from kontext_cli import errors
from kontext_cli import wirejson as json

TYPE_CHECKING = False  # typing costs ~3-5 ms to import; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

MAX_RESPONSE = 64 * 1024 * 1024
DEFAULT_DEADLINE = 30.0  # longer than any wait inside the daemon (a provider: 10 s + 10 s)
DEADLINE_ENV = "KONTEXT_DAEMON_TIMEOUT"


def deadline() -> float:
    """Seconds to wait for kontextd (``KONTEXT_DAEMON_TIMEOUT``, else 30)."""
    raw = os.environ.get(DEADLINE_ENV)
    if not raw:
        return DEFAULT_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0.5 <= value <= 3600:
        raise errors.UsageError(
            f"{DEADLINE_ENV} must be a number of seconds between 0.5 and 3600, not {raw[:20]!r}"
        )
    return value


class Connection:
    """One connection to kontextd. A credential obtained on it lives until it closes."""

    def __init__(self, sock: _socket.socket, pid: int | None = None, wait: float = 0.0) -> None:
        self._sock = sock
        self._buffer = b""
        self.pid = pid  # the serving process, as the kernel reports it (None: unknown)
        self._wait = wait or DEFAULT_DEADLINE

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request; return the JSON answer or raise the matching KontextError."""
        self.send(method, path, body)
        return self.answer()

    def answer(self) -> Any:
        """The next answer's JSON, or the matching KontextError raised."""
        status, answer = self.receive()
        if status >= 400:
            raise errors.from_wire(answer.get("error") if isinstance(answer, dict) else None)
        return answer

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        self.send(method, path, body)
        return self.receive()

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        """Send a request without waiting; ``receive`` reads the answers in order."""
        wait = self._wait + _long_poll(path)
        if wait != self._sock.gettimeout():  # settimeout costs two fcntl calls
            self._sock.settimeout(wait)
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: kontextd\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        try:
            self._sock.sendall(head.encode() + data)
        except (BrokenPipeError, ConnectionResetError):
            # The daemon may answer and close before reading us (its refusal of
            # another OS user does): then read that answer rather than fail here.
            pass
        except TimeoutError as exc:
            raise self._silent() from exc
        except OSError as exc:
            raise _lost(exc) from exc

    def receive(self) -> tuple[int, Any]:
        """The next answer: (HTTP status, decoded JSON)."""
        try:
            status, raw = self._read_response()
        except TimeoutError as exc:
            raise self._silent() from exc
        except OSError as exc:
            raise _lost(exc) from exc
        try:
            return status, json.loads(raw) if raw else None
        # Our own daemon's answer (the socket's owner is checked): its depth is not
        # limited here, but a nesting deeper than the C scanner's stack is one line.
        except (ValueError, RecursionError) as exc:
            raise errors.KontextError("kontextd sent a response that is not JSON") from exc

    def _silent(self) -> errors.DaemonUnavailable:
        who = f"kontextd (pid {self.pid})" if self.pid else "kontextd"
        how = (
            f"resume it (kill -CONT {self.pid}) or end it (kill {self.pid})"
            if self.pid
            else ("check it with 'kontext doctor'")
        )
        return errors.DaemonUnavailable(
            f"{who} did not answer within {self._sock.gettimeout() or 0:.0f}s: it is stopped "
            f"or stuck; {how}, then run the command again ({DEADLINE_ENV} sets the wait)"
        )

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise errors.DaemonUnavailable(
                    "kontextd closed the connection before answering (it stopped or crashed); "
                    "run the command again"
                )
            self._buffer += chunk
            if len(self._buffer) > 65536 and marker == b"\r\n\r\n":
                raise errors.KontextError("kontextd sent oversized headers")
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_response(self) -> tuple[int, bytes]:
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise errors.KontextError("kontextd sent a malformed status line") from exc
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_RESPONSE:
            raise errors.KontextError("kontextd sent an oversized response")
        while len(self._buffer) < length:
            chunk = self._sock.recv(max(65536, length - len(self._buffer)))
            if not chunk:
                raise errors.DaemonUnavailable("kontextd closed the connection mid-response")
            self._buffer += chunk
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return status, body


def _lost(exc: OSError) -> errors.DaemonUnavailable:
    return errors.DaemonUnavailable(
        f"lost the connection to kontextd ({exc.strerror or exc}): it stopped or "
        "crashed; run the command again"
    )


def _long_poll(path: str) -> float:
    """The seconds a ``wait=N`` query asks the daemon to hold its answer (a long poll)."""
    _, found, rest = path.partition("wait=")
    digits = rest.split("&", 1)[0]
    return float(digits) if found and digits.isdigit() else 0.0


def try_connect(paths: Paths) -> Connection | None:
    """Connect if a daemon is listening; None if there is no daemon.

    Raises ``Forbidden`` when the socket, or the process serving it, is another
    user's, and ``DaemonUnavailable`` when it does not accept within the deadline.
    """
    if len(paths.socket) > MAX_SOCKET_PATH:  # connect() would fail with a bare OSError
        raise errors.DaemonUnavailable(
            f"socket path {paths.socket} is too long for a Unix socket; use a shorter KONTEXT_HOME"
        )
    _check_socket_file(paths.socket)
    wait = deadline()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(wait)
    try:
        sock.connect(paths.socket)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        # No daemon. (A file where the runtime dir belongs: starting one says what to fix.)
        sock.close()
        refuse_if_confined(paths)  # or it is hidden from us: we run inside an agent
        return None
    except TimeoutError as exc:
        sock.close()
        raise errors.DaemonUnavailable(
            f"kontextd did not accept a connection on {paths.socket} within {wait:.0f}s: "
            "it is stopped or stuck; check it with 'kontext doctor'"
        ) from exc
    except OSError as exc:
        sock.close()
        raise errors.DaemonUnavailable(
            f"cannot reach kontextd at {paths.socket}: {exc.strerror or exc}"
        ) from exc
    return Connection(sock, _peer_pid(sock, paths.socket), wait)


def _check_socket_file(path: str) -> None:
    """The socket file must be ours: another user's socket is never spoken to."""
    try:
        st = os.lstat(path)
    except OSError:
        return  # none (no daemon) or unreadable: connect() says which
    if st.st_uid != os.getuid():
        raise errors.Forbidden(
            f"{path} belongs to uid {st.st_uid}, not you (uid {os.getuid()}): another user's "
            "socket is never used; remove it, or set KONTEXT_HOME to a directory of your own"
        )


def _peer_pid(sock: _socket.socket, path: str) -> int | None:
    """The serving process's pid, after checking with the kernel that it runs as our uid.

    Linux ``SO_PEERCRED`` gives ``struct ucred {pid, uid, gid}`` (three 32-bit
    ints, native order). Where it does not exist (macOS), the file owner check
    above is the guard.
    """
    option = getattr(_socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        raw = sock.getsockopt(_socket.SOL_SOCKET, option, 12)
    except OSError:
        return None
    pid = int.from_bytes(raw[0:4], sys.byteorder)
    uid = int.from_bytes(raw[4:8], sys.byteorder)
    if uid != os.getuid():
        sock.close()
        raise errors.Forbidden(
            f"{path} is served by uid {uid} (pid {pid}), not you (uid {os.getuid()}): another "
            "user's daemon is never used; set KONTEXT_HOME to a directory of your own"
        )
    return pid


def refuse_if_confined(paths: Paths) -> None:
    """Inside ``kontext exec``'s confinement the runtime dir is an empty read-only
    tmpfs: say so, rather than try to start a daemon there."""
    try:
        hidden = bool(os.statvfs(paths.runtime).f_flag & os.ST_RDONLY)
    except OSError:
        return
    if hidden:
        agent = os.environ.get("KONTEXT_AGENT")
        who = f"agent:{agent}'s" if agent else "an agent's"
        raise errors.AgentRefused(
            f"this process runs inside {who} confinement (kontext exec): kontext's files and "
            "daemon are hidden from agents; an agent may only narrow its own token by "
            "exchange at $KONTEXT_URL/token"
        )


def connect(paths: Paths, *, autostart: bool = True) -> Connection:
    """Connect to the daemon, starting it in the background first if it is not running."""
    conn = try_connect(paths)
    if conn is not None:
        return conn
    if not autostart:
        raise errors.DaemonUnavailable(
            "kontextd is not running; start it with 'kontext daemon start'"
        )
    from kontext_cli import spawn

    spawn.start_background(paths)
    import time

    deadline = time.monotonic() + spawn.START_TIMEOUT
    while (conn := try_connect(paths)) is None:
        if time.monotonic() > deadline:
            raise errors.DaemonUnavailable(f"kontextd started but {paths.socket} is not answering")
        time.sleep(0.02)
    return conn
