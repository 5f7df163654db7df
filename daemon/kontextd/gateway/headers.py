"""What crosses the gateway in headers, each way.

Towards the upstream (``upstream_headers``): our token never leaves —
``Authorization`` is replaced by the upstream credential, and any header that
carries one of our tokens (or a malleated copy: the check is on the token's
signed parts, not the exact string) is dropped. Hop-by-hop headers (RFC 9110
§7.6.1) stay on this hop, and so do headers a caller could use to speak for the
gateway: ``Forwarded``/``X-Forwarded-*``/``X-Real-IP`` (the upstream would
believe them). A header whose name holds an underscore is dropped too, as nginx
and Apache do: a CGI-style upstream reads ``X_Forwarded_For`` (or
``Content_Length``) as its dashed twin, so none could slip past these checks.
Headers that override the method or the URL (``X-HTTP-Method-Override`` and
kin, ``X-Original-URL``, spelt with dashes or underscores) are refused outright
(``override_refusal``): a route rule allows a method on a path, and an upstream
that honours an override would run another one.

Back to the caller (``downstream_headers``): hop-by-hop headers are dropped;
URLs that point at the upstream in ``Location``, ``Content-Location`` and
``Link`` (RFC 8288: GitHub's pagination) are rewritten to the gateway, so a
client following them stays on the gateway and never sends our token upstream.
Bodies are not rewritten: JSON ``url`` fields still name the upstream (README).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
        "cookie",
        "expect",
    }
)
FORWARDING = frozenset({"forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "via"})
OVERRIDES = frozenset(
    {
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-original-method",
    }
)
QUERY_OVERRIDES = frozenset({"_method", "x_http_method_override", "method"})
# PHP (under Symfony and Laravel) turns a field name's ' ', '.' and '[' into '_'
# and drops leading spaces, so '.method=' reaches them as '_method'.
_PHP_MANGLED = re.compile(r"[ .\[-]")
MAX_DECODINGS = 16  # percent-decodings tried (each shortens the text; a backstop)
URL_HEADERS = frozenset({"location", "content-location", "link"})
_LINK_URL = re.compile(r"<([^>]*)>")


def connection_tokens(value: str) -> frozenset[str]:
    """Headers named in ``Connection`` are hop-by-hop too (RFC 9110 §7.6.1)."""
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def token_marks(token: str) -> tuple[str, str]:
    """Substrings every copy of ``token`` contains, malleated or not: its JOSE header and
    payload segments without their last character (whose spare bits may differ)."""
    head, payload, _ = ([*token.split("."), "", ""])[:3]
    return head[:-1], payload[:-1]


def carries(value: str, marks: tuple[str, str]) -> bool:
    """Does ``value``, or any of its percent-decodings, contain a copy of the token?
    Decoded until nothing changes (an upstream may decode as often as it likes)."""
    texts = [value]
    while "%" in texts[-1] and len(texts) <= MAX_DECODINGS:  # only then can decoding change it
        decoded = urllib.parse.unquote(texts[-1])
        if decoded == texts[-1]:
            break
        texts.append(decoded)
    return any(mark and mark in text for text in texts for mark in marks)


def override_refusal(pairs: Iterable[tuple[str, str]], query: str) -> str | None:
    """Why a request that tries to override its method or URL is refused, or None."""
    for name, _ in pairs:
        if name.lower().replace("_", "-") in OVERRIDES:
            return f"{name[:40]} is not allowed through the gateway: send the real method and path"
    for key, _ in urllib.parse.parse_qsl(query, keep_blank_values=True, max_num_fields=200):
        if overrides_method(key):
            return f"a '{key[:20]}' query parameter is not allowed through the gateway"
    return None


def overrides_method(field: str) -> bool:
    """Whether a query or form field of this name is one some framework reads as the
    request's real method (Rack's and Symfony's ``_method``), as any of them spells it."""
    return _PHP_MANGLED.sub("_", field.lstrip(" ").lower()) in QUERY_OVERRIDES


def upstream_headers(
    pairs: list[tuple[str, str]], token: str, scheme: str, secret: str
) -> list[tuple[str, str]]:
    """The caller's headers as the upstream gets them (see the module docstring)."""
    connection = ",".join(v for n, v in pairs if n.lower() == "connection")
    drop = HOP_BY_HOP | FORWARDING | connection_tokens(connection)
    marks = token_marks(token)
    kept = [
        (k, v)
        for k, v in pairs
        if k.lower() not in drop
        and "_" not in k
        and not k.lower().startswith("x-forwarded-")
        and not carries(v, marks)
    ]
    kept.append(("Authorization", f"{scheme} {secret}"))
    length = next((v.strip() for n, v in pairs if n.lower() == "content-length"), None)
    if length is not None:
        kept.append(("Content-Length", length))  # llhttp checked it is one plain number
    return kept


def _rewrite(url: str, upstream: str, gateway: str) -> str:
    rest = url[len(upstream) :] if url.startswith(upstream) else None
    if rest is None or rest[:1] not in ("", "/", "?", "#"):
        return url  # another host that merely starts with the same letters
    return gateway + rest


def downstream_headers(
    pairs: Iterable[tuple[str, str]], upstream_base: str, gateway_base: str
) -> list[tuple[str, str]]:
    """The upstream's answer headers as the caller gets them (framing is ours)."""
    pairs = list(pairs)
    connection = ",".join(v for n, v in pairs if n.lower() == "connection")
    drop = HOP_BY_HOP | connection_tokens(connection)
    out = []
    for key, value in pairs:
        lower = key.lower()
        if lower in drop:
            continue
        if lower == "link":
            value = _LINK_URL.sub(
                lambda m: f"<{_rewrite(m[1], upstream_base, gateway_base)}>", value
            )
        elif lower in URL_HEADERS:
            value = _rewrite(value, upstream_base, gateway_base)
        out.append((key, value))
    return out
