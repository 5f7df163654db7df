"""Route rules: ``METHOD /path/pattern`` → a scope and a target, for the gateway.

A pattern is slash-separated segments: a literal (``pulls``), ``*`` (any one
segment), ``{name}`` (any one segment, captured for the target) or a final
``**`` (zero or more segments). The first rule whose method and pattern match
decides; a request no rule matches is denied (deny by default).

Paths are matched on their percent-decoded segments, and a path whose segments
decode to ``.``, ``..``, an empty name or one containing ``/`` or ``\\`` is refused
outright: the upstream would normalise ``/repos/a/b/%2e%2e/c`` into a path no
rule ever allowed.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
CAPTURE = re.compile(r"\{([a-z_][a-z0-9_]{0,31})\}")
LITERAL = re.compile(r"[A-Za-z0-9._~@:+-]{1,100}")


class InvalidRoute(ValueError):
    """A route rule in the catalogue or config is malformed."""


class UnsafePath(ValueError):
    """A request path that could mean something else once the upstream normalises it."""


@dataclass(frozen=True)
class RouteRule:
    """One rule: ``method`` + ``segments`` → ``scope`` on ``target`` (a template)."""

    method: str
    segments: tuple[str, ...]
    scope: str
    target: str | None = None
    # Each segment as (kind, value): kinds LIT, ANY, CAPTURE, REST — classified once,
    # not by a regular expression per segment on every gateway call.
    _kinds: tuple[tuple[int, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_kinds", tuple(_kind(seg) for seg in self.segments))

    @property
    def text(self) -> str:
        return f"{self.method} /{'/'.join(self.segments)}"

    def match(self, method: str, parts: list[str]) -> dict[str, str] | None:
        """The captures if this rule matches, else None."""
        if method != self.method and not (method == "HEAD" and self.method == "GET"):
            return None
        return _match(self._kinds, parts)

    def target_for(self, captures: dict[str, str]) -> str | None:
        if self.target is None:
            return None
        return CAPTURE.sub(lambda m: captures[m.group(1)], self.target)


LIT, ANY, CAPTURED, REST = range(4)


def _kind(seg: str) -> tuple[int, str]:
    if seg == "**":
        return (REST, "")
    if seg == "*":
        return (ANY, "")
    if CAPTURE.fullmatch(seg):
        return (CAPTURED, seg[1:-1])
    return (LIT, seg)


def _match(pattern: tuple[tuple[int, str], ...], parts: list[str]) -> dict[str, str] | None:
    captures: dict[str, str] = {}
    count = len(parts)
    for i, (kind, value) in enumerate(pattern):
        if kind == REST:
            return captures  # validated to be last: the rest, even nothing
        if i >= count:
            return None
        if kind == LIT:
            if value != parts[i]:
                return None
        elif kind == CAPTURED:
            captures[value] = parts[i]
    return captures if count == len(pattern) else None


def parse(text: str, scope: str, target: str | None = None) -> RouteRule:
    """Parse ``"GET /repos/{owner}/{repo}/pulls/**"`` into a rule, or raise InvalidRoute."""
    method, _, path = text.strip().partition(" ")
    if method not in METHODS:
        raise InvalidRoute(f"{text!r}: the method must be one of {', '.join(sorted(METHODS))}")
    path = path.strip()
    if not path.startswith("/") or path == "/":
        raise InvalidRoute(f"{text!r}: write METHOD /path/pattern")
    segments = tuple(path[1:].split("/"))
    names: set[str] = set()
    for i, seg in enumerate(segments):
        capture = CAPTURE.fullmatch(seg)
        if capture:
            names.add(capture.group(1))
        elif seg == "**" and i != len(segments) - 1:
            raise InvalidRoute(f"{text!r}: ** may only end a pattern")
        elif seg not in ("*", "**") and not LITERAL.fullmatch(seg):
            raise InvalidRoute(f"{text!r}: {seg!r} is not a literal, *, ** or {{name}}")
    if target is not None:
        unknown = set(CAPTURE.findall(target)) - names
        if unknown or not target:
            raise InvalidRoute(f"{text!r}: target {target!r} uses names the pattern lacks")
    return RouteRule(method, segments, scope, target)


def split_path(raw_path: str) -> list[str]:
    """The decoded segments of a request path (no query), or raise UnsafePath."""
    if not raw_path.startswith("/"):
        raise UnsafePath("the path must start with /")
    parts = raw_path[1:].split("/")
    if "%" in raw_path:  # otherwise decoding changes nothing
        parts = [urllib.parse.unquote(p, errors="strict") for p in parts]
    if parts == [""]:
        return []
    if parts[-1] == "":
        parts.pop()  # a trailing slash names the same resource
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise UnsafePath("the path has an empty, '.', '..' or encoded-slash segment")
        if "%" in part:
            # Double encoding (%252e%252e): an upstream that decodes again would see '..'.
            raise UnsafePath("the path has an encoded '%' (double encoding)")
    return parts


def find(
    rules: tuple[RouteRule, ...], method: str, parts: list[str]
) -> tuple[RouteRule, dict[str, str]] | None:
    """The first rule that matches, with its captures; None means deny."""
    for rule in rules:
        captures = rule.match(method, parts)
        if captures is not None:
            return rule, captures
    return None
