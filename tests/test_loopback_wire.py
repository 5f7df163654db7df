"""The loopback server's shortcuts give the bytes the general code gives.

``parse_form`` keeps the decoding of public fields, ``wireformat.head`` keeps
header blocks and ``jsonenc`` keeps its C encoders (``/token``'s per-request costs,
bench/FINDINGS.md); each must agree with what it stands in for —
``urllib.parse.parse_qs``, the head written field by field, ``json.dumps`` — or a
client would be read or answered differently, or the audit chain would not verify.
"""

from __future__ import annotations

import json
import urllib.parse

from hypothesis import given
from hypothesis import strategies as st

from kontextd import jsonenc
from kontextd.api.web import wireformat
from kontextd.api.web.messages import _PUBLIC_FIELDS, parse_form

_NAMES = st.one_of(st.sampled_from(sorted(_PUBLIC_FIELDS)), st.text(min_size=1, max_size=12))


@given(st.dictionaries(_NAMES, st.text(min_size=1), max_size=10))
def test_parse_form_reads_what_parse_qs_reads(fields: dict[str, str]) -> None:
    body = urllib.parse.urlencode(fields)
    expected = {k: v[-1] for k, v in urllib.parse.parse_qs(body, max_num_fields=32).items()}
    assert parse_form(body) == expected
    assert parse_form(body) == expected  # again: now from the kept decodings


def test_a_public_value_is_decoded_the_same_when_kept() -> None:
    body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&scope=a+b%3Ac"
    for _ in range(2):
        assert parse_form(body) == {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "scope": "a b:c",
        }


def test_answer_heads_from_kept_blocks_are_the_same() -> None:
    fields = [("Content-Type", "application/json"), ("Pragma", "no-cache")]
    first = wireformat.head(200, fields, 12, False)
    again = wireformat.head(200, iter(fields), 12, True)
    assert first.startswith(b"HTTP/1.1 200 OK\r\nServer: kontextd\r\nDate: ")
    assert first.endswith(
        b"\r\nContent-Type: application/json\r\nPragma: no-cache\r\nContent-Length: 12\r\n\r\n"
    )
    assert again.endswith(b"Content-Length: 12\r\nConnection: close\r\n\r\n")
    assert wireformat.head(599, [("X-A", "b")], 0, False).startswith(b"HTTP/1.1 599 Unknown\r\n")


_SCALARS = st.one_of(
    st.text(),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(),  # NaN and infinities too: json.dumps writes them (allow_nan)
)
_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(), inner)),
    max_leaves=20,
)


@given(_TREES)
def test_encoders_write_what_json_dumps_writes(value: object) -> None:
    assert jsonenc.COMPACT.encode(value) == json.dumps(value, separators=(",", ":"))
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert jsonenc.CANONICAL.encode(value) == canonical


def test_encoders_renewed_write_the_same() -> None:
    value = {"b": [1, 2.5, None], "a": {"z": "é\n", "y": True}}
    first = jsonenc.CANONICAL.encode(value)
    for _ in range(jsonenc.RENEW_AFTER + 1):
        assert jsonenc.CANONICAL.encode(value) == first
