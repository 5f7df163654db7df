"""Serialising answers: status line, header block, chunked framing (RFC 9112 §4, §7.1).

Header names and values come from our handlers or from an upstream's parsed
response; a CR or LF in either would split the header block, so they are refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus

LAST_CHUNK = b"0\r\n\r\n"
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_date: tuple[int, bytes] = (0, b"")


def _date_line() -> bytes:
    """``Date:`` for this second (RFC 9110 §6.6.1), formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode())
    return _date[1]


# Header fields most answers repeat, checked and encoded once. Only names whose values
# are fixed strings of ours: never one that may carry a secret (Location, Set-Cookie).
_FIELDS: dict[tuple[str, str], bytes] = {}
_FIELDS_KEPT = 256
_FIXED = frozenset(
    {
        "Content-Type",
        "Cache-Control",
        "X-Content-Type-Options",
        "Pragma",
        "Referrer-Policy",
        "X-Frame-Options",
        "Access-Control-Allow-Origin",
    }
)


def _field(name: str, value: str) -> bytes:
    line = _FIELDS.get((name, value))
    if line is not None:
        return line
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
        raise ValueError(f"refusing to send a malformed header field {name[:40]!r}")
    line = f"{name}: {value}\r\n".encode("latin-1")
    if name in _FIXED and len(_FIELDS) < _FIELDS_KEPT:
        _FIELDS[(name, value)] = line
    return line


# Whole status lines and header blocks made only of ``_FIXED`` fields, encoded once:
# an API answer's head is then a few joins (a ``/token`` answer has five such fields).
_STATUS_LINES: dict[int, bytes] = {}
_BLOCKS: dict[tuple[tuple[str, str], ...], bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        text = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\nServer: kontextd\r\n"
        line = text.encode()
        if status in _REASONS:  # a bounded set
            _STATUS_LINES[status] = line
    return line


def _block(fields: tuple[tuple[str, str], ...]) -> bytes:
    block = _BLOCKS.get(fields)
    if block is not None:
        return block
    block = b"".join(
        _field(n, v) for n, v in fields if n.lower() not in ("content-length", "connection")
    )
    if len(_BLOCKS) < _FIELDS_KEPT and all(n in _FIXED for n, _ in fields):
        _BLOCKS[fields] = block
    return block


def head(status: int, fields: Iterable[tuple[str, str]], length: int, close: bool) -> bytes:
    """The head of a complete answer of ``length`` body bytes."""
    return b"".join(
        (
            _status_line(status),
            _date_line(),
            _block(tuple(fields)),
            b"Content-Length: %d\r\n" % length,
            b"Connection: close\r\n\r\n" if close else b"\r\n",
        )
    )


def stream_head(
    status: int,
    reason: str | None,
    fields: Iterable[tuple[str, str]],
    length: int | None,
    close: bool,
    chunked: bool,
) -> bytes:
    """The head of a streamed answer: chunked, or ``length`` bytes when given.

    ``fields`` are sent as given (an upstream's own ``Date`` and ``Server`` pass
    through); framing headers are ours."""
    phrase = reason or _REASONS.get(status, "Unknown")
    parts = [f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")]
    parts.extend(_field(n, v) for n, v in fields)
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif length is not None:
        parts.append(b"Content-Length: %d\r\n" % length)
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)
