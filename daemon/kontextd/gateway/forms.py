"""Form bodies that would override a call's method, refused before they go upstream.

Rack (``Rack::MethodOverride``), Symfony and Laravel read a ``_method`` field
from a POSTed HTML form and run the handler of that method instead. A route rule
allows a method on a path, so a form that says ``_method=DELETE`` would turn an
allowed POST into a DELETE at such an upstream — the body's twin of the
``?_method=`` query parameter ``headers.override_refusal`` already refuses.

So a body whose media type is a form (``application/x-www-form-urlencoded``,
``multipart/form-data``) is read whole before anything is sent upstream, at most
``MAX_FORM`` bytes, and refused with 400 if a field is named like an override.
Forms are small; files go as their own bodies (GitHub's uploads are raw bytes or
JSON), and those still stream. A JSON body is not inspected: an upstream that
takes ``_method`` from JSON (Laravel's input bag does) is named in SECURITY.md.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import AsyncIterator

from kontextd.gateway.headers import QUERY_OVERRIDES

MAX_FORM = 1024 * 1024
MAX_FIELDS = 1000
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# RFC 7578 §4.2: each part's Content-Disposition names its field, quoted or as a token.
_FIELD_NAME = re.compile(
    rb'content-disposition:[^\r\n]*?;\s*name\s*=\s*("[^"\r\n]*"|[^;\s]+)', re.IGNORECASE
)
_BOUNDARY = re.compile(r';\s*boundary\s*=\s*("[^"]+"|[^;\s]+)', re.I)


class FormRefused(Exception):
    """A form body the gateway will not forward: ``status`` and one line saying why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def media_type(content_type: str | None) -> str:
    """``multipart/form-data; boundary=x`` → ``multipart/form-data`` (RFC 9110 §8.3.1)."""
    return (content_type or "").partition(";")[0].strip().lower()


def is_form(content_type: str | None) -> bool:
    """Whether a body of this Content-Type is read and checked before it is forwarded."""
    return media_type(content_type) in FORM_TYPES


async def read_checked(chunks: AsyncIterator[bytes], content_type: str) -> bytes:
    """The whole form body, once no field of it overrides the method; else ``FormRefused``."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_FORM:
            raise FormRefused(
                413,
                f"a form body over {MAX_FORM // 1024} KiB is not forwarded by the gateway: "
                "send large content as JSON or raw bytes",
            )
        parts.append(chunk)
    body = b"".join(parts)
    for name in field_names(body, content_type):
        if name.lower() in QUERY_OVERRIDES:
            raise FormRefused(400, f"a '{name[:20]}' form field is not allowed through the gateway")
    return body


def field_names(body: bytes, content_type: str) -> list[str]:
    """The names of a form's fields (``FormRefused`` if it cannot be read as one)."""
    if media_type(content_type) == "application/x-www-form-urlencoded":
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_FIELDS
            )
        except ValueError as exc:
            raise FormRefused(400, f"a form with more than {MAX_FIELDS} fields") from exc
        return [key for key, _ in pairs]
    return _multipart_names(body, content_type)


def _multipart_names(body: bytes, content_type: str) -> list[str]:
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise FormRefused(400, "a multipart/form-data body without a boundary parameter")
    delimiter = b"--" + found.group(1).strip('"').encode("latin-1")
    names = []
    for part in body.split(delimiter)[1:]:
        head = part.partition(b"\r\n\r\n")[0]  # a part's headers end at its first blank line
        for match in _FIELD_NAME.finditer(head):
            raw = match.group(1).strip(b'"').decode("latin-1")
            names.append(urllib.parse.unquote(raw))  # some clients percent-encode names
    return names
