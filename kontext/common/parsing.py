"""JSON and TOML from outside, with a limit on how deeply they nest.

``json.loads`` and ``tomllib`` recurse once per level of nesting: a body of
``[[[[…`` (or a ``config.toml`` of nested arrays) raises ``RecursionError`` — a
500 with a traceback, or a daemon that stops "maximum recursion depth exceeded"
without naming the file — and a structure just under Python's limit breaks the
next recursive walk of it (``json.dumps`` into the audit log). Everything kontext
reads from a request, a provider, a file the user hands it or its own config
goes through these two functions, which refuse more than ``MAX_DEPTH`` levels
with a ``TooDeep`` (a ``ValueError``) instead.

Cheap enough for ``kontext exec``'s lease fast path: the depth is only walked
when the text has more brackets than the limit (a credential request has two).
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing costs ~3-5 ms to import; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

MAX_DEPTH = 32  # far beyond anything kontext means (config.toml: 5; a request: 2)


class TooDeep(ValueError):
    """Arrays and objects (tables) nested deeper than the limit."""


def json_loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads``, refusing more than ``max_depth`` levels of arrays and objects.

    Raises ``ValueError``: ``json.JSONDecodeError`` for bad JSON, ``TooDeep``,
    or ``UnicodeDecodeError`` for bytes that are not UTF-8.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise TooDeep(_message("JSON", max_depth)) from None
    if _brackets(data) > max_depth:
        check_depth(value, max_depth, "JSON")
    return value


def toml_loads(text: str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """``tomllib.loads``, refusing more than ``max_depth`` levels of arrays and tables.

    Raises ``tomllib.TOMLDecodeError`` (a ``ValueError``) or ``TooDeep``.
    """
    import tomllib

    if _long_dotted_key(text, 4 * max_depth):
        raise TooDeep(_message("TOML", max_depth))
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise TooDeep(_message("TOML", max_depth)) from None
    # Dotted keys nest tables too, and the document itself is the first table.
    if _brackets(text) + text.count(".") + 1 > max_depth:
        check_depth(value, max_depth, "TOML")
    return value


def check_depth(value: object, max_depth: int = MAX_DEPTH, what: str = "the value") -> None:
    """Raise ``TooDeep`` if ``value`` nests lists/dicts deeper than ``max_depth``.

    Iterative: walking must not itself recurse once per level.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > max_depth:
            raise TooDeep(_message(what, max_depth))
        stack.extend((child, depth + 1) for child in children)


def _long_dotted_key(text: str, limit: int) -> bool:
    """A key or table header of more than ``limit`` dotted parts, found line by line.

    tomllib takes time quadratic in a dotted key's parts (20,000 parts: 13 s), so
    such a key is refused before it is parsed. Only the part of a line before its
    first ``=`` counts (a header line has none), so dotted values are never counted.
    """
    if text.count(".") <= limit:
        return False
    return any(line.partition("=")[0].count(".") > limit for line in text.splitlines())


def _brackets(data: str | bytes) -> int:
    """An upper bound of the nesting depth: every opening bracket."""
    if isinstance(data, bytes):
        return data.count(b"[") + data.count(b"{")
    return data.count("[") + data.count("{")


def _message(what: str, max_depth: int) -> str:
    return f"{what} nested deeper than {max_depth} levels of arrays and objects"
