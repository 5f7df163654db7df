"""The loopback server's shortcuts give the bytes the general code gives.

``compact_json`` writes a flat object itself and ``parse_form`` keeps the decoding
of public fields (``/token``'s per-request costs, bench/FINDINGS.md); each must
agree with what it stands in for — ``json.dumps`` and ``urllib.parse.parse_qs`` —
on any input, or a client would see a different answer or a different request.
"""

from __future__ import annotations

import json
import urllib.parse

from hypothesis import given
from hypothesis import strategies as st

from kontextd.api.web import wireformat
from kontextd.api.web.messages import _PUBLIC_FIELDS, compact_json, parse_form

_SCALARS = st.one_of(
    st.text(),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.text(alphabet="AZaz09-_.", min_size=500, max_size=700),  # an access token's shape
)


@given(st.dictionaries(st.text(), _SCALARS, max_size=8))
def test_compact_json_is_json_dumps(body: dict[str, object]) -> None:
    assert compact_json(body) == json.dumps(body, separators=(",", ":"))


@given(
    st.one_of(st.lists(_SCALARS), st.dictionaries(st.text(), st.dictionaries(st.text(), _SCALARS)))
)
def test_compact_json_of_anything_else_is_json_dumps(body: object) -> None:
    assert compact_json(body) == json.dumps(body, separators=(",", ":"))


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
