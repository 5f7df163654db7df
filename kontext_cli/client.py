"""The control-API client: HTTP/1.1 + JSON over the daemon's Unix socket.

Deliberately tiny and standard-library only — ``kontext exec`` uses it on every
run, and one request/response exchange must cost a fraction of a millisecond.
The daemon always answers with ``Content-Length``; nothing else is needed.
It uses ``_socket``, the C module under ``socket``: ``socket.py`` also imports
``selectors`` and builds its enums, ~2 ms of every ``kontext exec`` for
nothing this client calls (connect, sendall, recv and close are all C).
"""

from __future__ import annotations

import _socket
import json

from kontext.common.paths import MAX_SOCKET_PATH, Paths
from kontext_cli import errors

TYPE_CHECKING = False  # typing costs ~3-5 ms to import; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

MAX_RESPONSE = 64 * 1024 * 1024


class Connection:
    """One connection to kontextd. A credential obtained on it lives until it closes."""

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

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
        except OSError as exc:
            raise _lost(exc) from exc

    def receive(self) -> tuple[int, Any]:
        """The next answer: (HTTP status, decoded JSON)."""
        try:
            status, raw = self._read_response()
        except OSError as exc:
            raise _lost(exc) from exc
        try:
            return status, json.loads(raw) if raw else None
        except ValueError as exc:
            raise errors.KontextError("kontextd sent a response that is not JSON") from exc

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


def try_connect(paths: Paths) -> Connection | None:
    """Connect if a daemon is listening; None if there is no daemon."""
    if len(paths.socket) > MAX_SOCKET_PATH:  # connect() would fail with a bare OSError
        raise errors.DaemonUnavailable(
            f"socket path {paths.socket} is too long for a Unix socket; use a shorter KONTEXT_HOME"
        )
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(paths.socket)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        # No daemon. (A file where the runtime dir belongs: starting one says what to fix.)
        sock.close()
        return None
    except OSError as exc:
        sock.close()
        raise errors.DaemonUnavailable(
            f"cannot reach kontextd at {paths.socket}: {exc.strerror or exc}"
        ) from exc
    return Connection(sock)


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
