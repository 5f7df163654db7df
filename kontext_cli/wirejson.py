"""JSON for the control client, straight from ``_json``, the C accelerator ``json`` uses.

Importing ``json`` imports ``re`` (for pure-Python fallbacks the C code never
needs): with ``enum`` and ``functools`` that is several milliseconds of every
``kontext exec``, more than the daemon round trip (bench/FINDINGS.md). The C
scanner and encoder below are the very ones ``json.loads``/``json.dumps`` call.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Context:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON here")


def _refuse(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # typeshed wants a decoder
_encode = _json.make_encoder(
    None, _refuse, _json.encode_basestring_ascii, None, ":", ",", False, False, False
)
_encode_sorted = _json.make_encoder(
    None, _refuse, _json.encode_basestring_ascii, None, ":", ",", True, False, False
)


def dumps(value: Any) -> str:
    """Compact JSON, ASCII only (what ``json.dumps(value, separators=(",", ":"))`` writes)."""
    return "".join(_encode(value, 0))


def dumps_sorted(value: Any) -> str:
    """``dumps`` with keys sorted (``audit tail --json``: one stable line per event)."""
    return "".join(_encode_sorted(value, 0))


def loads(raw: bytes | str) -> Any:
    """One JSON value; ``ValueError`` when ``raw`` is anything else."""
    text = (raw.decode() if isinstance(raw, bytes) else raw).strip(" \t\n\r")
    try:
        value, end = _scan(text, 0)
    except StopIteration as exc:
        raise ValueError(f"not JSON (at character {exc.value})") from None
    if end != len(text):
        raise ValueError(f"not JSON (extra data at character {end})")
    return value
