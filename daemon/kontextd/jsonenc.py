"""JSON encoders made once, for what every ``/token`` exchange encodes four times.

``json.dumps(value, separators=...)`` builds a ``JSONEncoder`` on every call, and
its ``encode`` builds the C encoder (``_json.make_encoder``) on every call too:
under callgrind that set-up was ~7,000 instructions of each encoding, as much as
encoding a small object. ``Encoder`` keeps one C encoder and calls it directly.

The output is ``json.dumps``'s with the same options, character for character
(tests/test_loopback_wire.py), with one difference: no check for cycles
(``check_circular=False``), so only trees of dicts, lists and scalars — what the
daemon builds — are given to it (a cycle would be a ``RecursionError``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _std
from typing import Any

# The C encoder remembers each key's encoding; it is made anew after this many
# uses so that keys seen once (an upstream's header names, say) do not pile up.
RENEW_AFTER = 4096


class Encoder:
    """``json.dumps(value, separators=(",", ":"), sort_keys=..., ensure_ascii=...)``."""

    def __init__(self, *, sort_keys: bool = False, ensure_ascii: bool = True) -> None:
        self._fallback = json.JSONEncoder(
            separators=(",", ":"),
            sort_keys=sort_keys,
            ensure_ascii=ensure_ascii,
            check_circular=False,
        )
        self._strings = _std.encode_basestring_ascii if ensure_ascii else _std.encode_basestring
        self._sort_keys = sort_keys
        self._uses = 0
        self._c: Callable[[Any, int], Any] | None = None
        self._renew()

    def _renew(self) -> None:
        self._uses = 0
        maker = getattr(_std, "c_make_encoder", None)  # not in typeshed: CPython's _json
        if maker is None:  # a Python without the _json accelerator
            self._c = None
            return
        fallback = self._fallback
        self._c = maker(
            None,  # no cycle check (module docstring)
            fallback.default,
            self._strings,
            None,  # no indent
            fallback.key_separator,
            fallback.item_separator,
            self._sort_keys,
            fallback.skipkeys,
            fallback.allow_nan,
        )

    def encode(self, value: Any) -> str:
        if self._c is None or isinstance(value, str):
            return self._fallback.encode(value)
        self._uses += 1
        if self._uses > RENEW_AFTER:
            self._renew()
        chunks = self._c(value, 0)
        return "".join(chunks)


COMPACT = Encoder()  # ``json.dumps(value, separators=(",", ":"))``
# The audit chain's canonical form (``audit.chain``): sorted keys, UTF-8 as is.
CANONICAL = Encoder(sort_keys=True, ensure_ascii=False)
