"""What a route handler receives and returns: ``Request``, ``Response``, ``Stream``.

A ``Request`` is fully parsed by llhttp (httptools) before a handler sees it:
method, target, headers (case-insensitive, repeats kept), and for buffered
routes the whole body, at most ``MAX_BODY`` bytes. ``peer_uid`` is the OS user
at the other end of the TCP connection (``kontext.common.peeruid``), or None.

A handler answers with a ``Response`` (bytes) or a ``Stream`` (an async iterator of
byte chunks, sent chunked unless a length is given; ``sse.events`` builds one).
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from kontext.common import parsing, wire
from kontextd.errors import ApiError, invalid
from kontextd.jsonenc import COMPACT

COMMON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class Headers:
    """Request headers: case-insensitive lookup, original order and repeats kept."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._first: dict[str, str] = {}
        for name, value in pairs:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [v for n, v in self._pairs if n.lower() == wanted]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def names(self) -> set[str]:
        return set(self._first)


class Peer:
    """The socket at the other end of one connection, as the kernel knows it (asked
    once, at accept): the uid that created it, its inode (how ``/proc/PID/fd`` names
    it), and what routes concluded about it, kept for the connection's life (the
    4-tuple stays this one socket's while our end holds it)."""

    __slots__ = ("inode", "uid", "verdicts")

    def __init__(self, uid: int | None, inode: int | None) -> None:
        self.uid = uid
        self.inode = inode
        self.verdicts: dict[str, Any] = {}


class Request:
    """One request; ``body`` is empty for streaming routes (they read ``chunks``)."""

    __slots__ = (
        "body",
        "body_used",
        "chunks",
        "close",
        "headers",
        "method",
        "params",
        "path",
        "peer",
        "peer_uid",
        "query_string",
        "route",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: Headers,
        peer_uid: int | None,
        peer: Peer | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.peer_uid = peer_uid
        self.peer = peer
        self.path, _, self.query_string = target.partition("?")
        self.body = b""
        self.body_used = False
        self.close = False  # set to end the connection after this answer
        self.chunks: AsyncIterator[bytes] | None = None
        self.route: Any = None
        self.params: tuple[str, ...] = ()

    @property
    def query(self) -> dict[str, str]:
        """The query's parameters (the last of repeats), at most 32."""
        pairs = urllib.parse.parse_qs(self.query_string, max_num_fields=32)
        return {k: v[-1] for k, v in pairs.items()}

    def read(self) -> bytes:
        """The body (a handler that reads it keeps the connection usable)."""
        self.body_used = True
        return self.body

    def form(self) -> dict[str, str]:
        """An ``application/x-www-form-urlencoded`` body; repeats refused (RFC 6749 §3.1)."""
        if not (self.headers.get("Content-Type") or "").startswith(
            "application/x-www-form-urlencoded"
        ):
            raise invalid("send application/x-www-form-urlencoded")
        try:
            return parse_form(self.read().decode("ascii"))
        except UnicodeDecodeError as exc:
            raise invalid("malformed form body") from exc


MAX_FORM_FIELDS = 32


def parse_form(text: str) -> dict[str, str]:
    """A form body as ``urllib.parse.parse_qs(text, max_num_fields=32)`` reads it —
    ``&``-separated, ``+`` is a space, percent-decoding (UTF-8, errors replaced), a
    field without ``=`` or with an empty value left out (RFC 6749 §3.1: as if omitted)
    — but repeats refused, and without parse_qs's per-field cost on the ``/token``
    path (a field with no ``%`` or ``+`` is taken as it is, which is what decoding
    would give)."""
    if text.count("&") >= MAX_FORM_FIELDS:
        raise invalid("malformed form body")  # parse_qs: "Max number of fields exceeded"
    fields: dict[str, str] = {}
    for pair in text.split("&"):
        name, equals, value = pair.partition("=")
        if not equals or not value:
            continue
        if "%" in name or "+" in name:
            name = _decoded(name) if len(name) <= _KEPT_LENGTH else _unquote_plus(name)
        if "%" in value or "+" in value:
            kept = name in _PUBLIC_FIELDS and len(value) <= _KEPT_LENGTH
            value = _decoded(value) if kept else _unquote_plus(value)
        if name in fields:
            raise invalid("repeated form parameter")
        fields[name] = value
    return fields


# Fields whose values are the same on every request of a client (RFC 8693's URNs, a
# scope list) and never a secret: their decoding is kept (``_decoded``), as names are.
_PUBLIC_FIELDS = frozenset(
    {
        "grant_type",
        "subject_token_type",
        "requested_token_type",
        "actor_token_type",
        "scope",
        "resource",
        "audience",
        "response_type",
        "code_challenge_method",
    }
)


_KEPT_LENGTH = 256  # longer ones are decoded each time: the cache stays small


def _unquote_plus(text: str) -> str:
    return urllib.parse.unquote(text.replace("+", " "))


@functools.lru_cache(maxsize=256)
def _decoded(text: str) -> str:
    """Percent-decoding of a field name or a public field's value, kept: an exchange's
    ``grant_type``, ``subject_token_type`` and ``scope`` each cost an ``unquote``
    (several µs) per request otherwise."""
    return _unquote_plus(text)


@dataclass
class Response:
    """A complete answer. ``close`` ends the connection after it (and says so)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False

    def header_lines(self) -> Iterator[tuple[str, str]]:
        yield from self.headers.items()


@dataclass
class Stream:
    """A streamed answer: ``chunks`` as they come; ``length`` None means chunked."""

    status: int
    chunks: AsyncIterator[bytes]
    headers: list[tuple[str, str]] = field(default_factory=list)
    length: int | None = None
    reason: str | None = None
    close: bool = False
    head_only: bool = False  # HEAD, 204, 304: headers only (RFC 9110 §6.4.1)
    prefix: bytes = b""  # body bytes already at hand, sent with the head; then ``chunks``


def json_response(
    status: int, body: Any, headers: dict[str, str] | None = None, *, close: bool = False
) -> Response:
    """A JSON answer with the common headers; ``headers`` may override Content-Type."""
    data = COMPACT.encode(body).encode()
    fields = {"Content-Type": "application/json", **COMMON_HEADERS, **(headers or {})}
    return Response(status, data, fields, close)


def html_response(status: int, html: str, headers: dict[str, str]) -> Response:
    """An HTML page (or an empty redirect); ``headers`` carry its security policy."""
    return Response(status, html.encode(), {**COMMON_HEADERS, **headers})


def error_response(error: ApiError) -> Response:
    """The daemon's one-line JSON error; 421 and 413 also end the connection."""
    close = error.code in (wire.MISDIRECTED, wire.TOO_LARGE)
    body = {"error": {"code": error.code, "message": error.message}}
    return json_response(error.status, body, close=close)


def json_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object (empty means ``{}``); one ``invalid`` line otherwise."""
    if not raw:
        return {}
    try:
        value = parsing.json_loads(raw)  # depth-limited: deep nesting is one line, not a 500
    except ValueError as exc:  # bad JSON, not UTF-8, or parsing.TooDeep
        raise invalid(f"body is not valid JSON: {str(exc)[:120]}") from exc
    if not isinstance(value, dict):
        raise invalid("body must be a JSON object")
    return value
