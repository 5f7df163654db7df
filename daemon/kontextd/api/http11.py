"""A lean HTTP/1.1 request-head parser for our handlers.

``http.server`` parses headers with the ``email`` package — a fifth of the
daemon's CPU per credential in profiles. Our peers are our own CLI, browsers
and resource servers sending ordinary requests, so a strict, small parser does:
it refuses obsolete line folding, header lines without a colon, over-long
lines and too many headers (RFC 9112 §5), and never guesses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

MAX_LINE = 65536
MAX_HEADERS = 100


class HeadError(ValueError):
    """The request head is malformed: (HTTP status, one-line reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Headers:
    """Request headers: case-insensitive lookup, original order and repeats kept."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._first: dict[str, str] = {}
        for name, value in pairs:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str, failobj: list[str] | None = None) -> list[str] | None:
        wanted = name.lower()
        found = [v for n, v in self._pairs if n.lower() == wanted]
        return found or failobj

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def keys(self) -> list[str]:
        return [name for name, _ in self._pairs]

    def values(self) -> list[str]:
        return [value for _, value in self._pairs]

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def get_content_type(self) -> str:
        value = self.get("Content-Type") or "text/plain"
        return value.split(";", 1)[0].strip().lower()


def read_headers(rfile: BinaryIO) -> Headers:
    """Read header lines up to the blank line; raise HeadError on anything irregular."""
    pairs: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HeadError(431, "header line too long")
        if line in (b"\r\n", b"\n", b""):
            return Headers(pairs)
        if len(pairs) >= MAX_HEADERS:
            raise HeadError(431, "too many headers")
        if line[:1] in (b" ", b"\t"):
            raise HeadError(400, "obsolete header line folding")  # RFC 9112 §5.2
        name, colon, value = line.decode("iso-8859-1").partition(":")
        if not colon or not name or name != name.strip():
            raise HeadError(400, "malformed header line")  # RFC 9112 §5.1: no space before ':'
        pairs.append((name, value.strip()))


def request_line(raw: bytes) -> tuple[str, str, str]:
    """(method, target, version) from ``METHOD TARGET HTTP/1.x``; HTTP/0.9 and 2+ are refused."""
    words = raw.decode("iso-8859-1").rstrip("\r\n").split()
    if len(words) != 3:
        raise HeadError(400, "bad request line")
    method, target, version = words
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HeadError(505 if version.startswith("HTTP/") else 400, "unsupported HTTP version")
    return method, target, version
