"""Form bodies that would override a call's method, refused before they go upstream.

Rack (``Rack::MethodOverride``), Symfony and Laravel read a ``_method`` field
from a POSTed HTML form and run the handler of that method instead. A route rule
allows a method on a path, so a form that says ``_method=DELETE`` would turn an
allowed POST into a DELETE at such an upstream — the body's twin of the
``?_method=`` query parameter ``headers.override_refusal`` already refuses.

So a body whose media type is a form (``application/x-www-form-urlencoded``,
``multipart/form-data``) is read whole before anything is sent upstream, at most
``MAX_FORM`` bytes, and refused with 400 if a field is named like an override,
as any framework spells it (``headers.overrides_method``: PHP reads ``.method``
as ``_method``). Where servers could disagree on what the body is, it is refused
too: a request that names a form and another Content-Type, and a multipart body
is searched for field names on every line, not only where our boundary says.
Forms are small; files go as their own bodies (GitHub's uploads are raw bytes or
JSON), and those still stream. A JSON body is not inspected: an upstream that
takes ``_method`` from JSON (Laravel's input bag does) is named in SECURITY.md.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import AsyncIterator

from kontextd.gateway.headers import overrides_method

MAX_FORM = 1024 * 1024
MAX_FIELDS = 1000
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# RFC 7578 §4.2: each part's Content-Disposition names its field, quoted or as a
# token. Looked for on every line of the body, whatever the boundary says: a
# server that reads another boundary than ours (two given) still finds no field
# we did not see. A file whose text holds such a line is refused too (fail closed).
_FIELD_NAME = re.compile(
    rb'^[ \t]*content-disposition[ \t]*:[^\r\n]*?;\s*name\s*=\s*("[^"\r\n]*"|[^;\s]+)',
    re.IGNORECASE | re.MULTILINE,
)
_QUOTED = re.compile(r'"[^"]*"')


class FormRefused(Exception):
    """A form body the gateway will not forward: ``status`` and one line saying why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def media_type(content_type: str) -> str:
    """``multipart/form-data; boundary=x`` → ``multipart/form-data`` (RFC 9110 §8.3.1)."""
    return content_type.partition(";")[0].strip().lower()


def form_type(values: list[str]) -> str | None:
    """The form media type to read a body by, or None if it is not a form.

    Content-Type is a single field (RFC 9110 §8.3), yet a request may send it twice
    or as a list, and servers differ on which they believe (PHP reads up to the
    first ``,``; others take the last header). So a body is a form if any element
    names one, and one that names a form and anything else is refused."""
    unquoted = [_QUOTED.sub('""', value) for value in values]  # a boundary may hold a comma
    types = {media_type(e) for value in unquoted for e in value.split(",") if e.strip()}
    forms = types & FORM_TYPES
    if not forms:
        return None
    if len(types) > 1:
        raise FormRefused(400, "send one Content-Type: this request names several")
    return forms.pop()


async def read_checked(chunks: AsyncIterator[bytes], kind: str) -> bytes:
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
    for name in field_names(body, kind):
        if overrides_method(name):
            raise FormRefused(400, f"a '{name[:20]}' form field is not allowed through the gateway")
    return body


def field_names(body: bytes, kind: str) -> list[str]:
    """The names of a form's fields (``FormRefused`` if it cannot be read as one)."""
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_FIELDS
            )
        except ValueError as exc:
            raise FormRefused(400, f"a form with more than {MAX_FIELDS} fields") from exc
        return [key for key, _ in pairs]
    names = []
    for match in _FIELD_NAME.finditer(body):
        raw = match.group(1).strip(b'"').decode("latin-1")
        names.append(urllib.parse.unquote(raw))  # some clients percent-encode names
    return names
