"""Client ID Metadata Documents: a client named by the URL of a JSON document about itself.

(draft-ietf-oauth-client-id-metadata-document, as MCP clients use it.) The client
id *is* an URL; ``/authorize`` fetches it and reads the client's name and
redirect URIs from it. Fetching on someone else's say-so is a server-side
request, so the limits are strict:

- ``https`` only, to a host whose every address is public (``is_global``), and
  the connection goes to the address that was checked — a second DNS answer
  cannot swap in 127.0.0.1 (rebinding);
- or plain ``http`` to a loopback address literal (``127.0.0.1``, ``[::1]``) on
  another port than the daemon's own: a document served by a program on this
  computer — which could as well register itself (RFC 7591), so it gains nothing;
- no redirect is followed; at most 5 KiB; 5 seconds in all;
- the document must name itself (``client_id`` equal to the URL), use only
  native-app redirect URIs and no client secret.

The page still calls the client unverified: a program on this computer can put
any document's URL in its request and listen on that document's loopback
redirect. A good document is cached for 5 minutes; a refusal is not.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any

from kontext.common import parsing
from kontextd.core import Core
from kontextd.oauth.public_clients import (
    MAX_REDIRECTS,
    MAX_URI,
    PublicClient,
    UnknownClient,
    check_redirect_uri,
)

MAX_SIZE = 5 * 1024
TIMEOUT = 5.0
CACHE_TTL = 300.0
CACHE_SIZE = 64
MAX_NAME = 100
GRANT_TYPES = ("authorization_code", "refresh_token")
LOOPBACK_LITERALS = ("127.0.0.1", "::1")

_cache: dict[str, tuple[float, PublicClient]] = {}
_lock = threading.Lock()


def is_document_url(url: str) -> bool:
    """Could ``url`` name a metadata document? (https with a path, or loopback http.)"""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    segments = parts.path.split("/")
    return (
        len(url) <= MAX_URI
        and parts.username is None
        and not parts.fragment
        and parts.path not in ("", "/")
        and "." not in segments
        and ".." not in segments
        and bool(parts.hostname)
        and (
            parts.scheme == "https"
            or (parts.scheme == "http" and parts.hostname in LOOPBACK_LITERALS and port is not None)
        )
    )


def fetch(core: Core, url: str) -> PublicClient:
    """The client ``url`` describes, from the cache or fetched now; ``UnknownClient``
    (naming what was wrong) when it cannot be used."""
    now = time.monotonic()
    with _lock:
        cached = _cache.get(url)
    if cached is not None and cached[0] > now:
        return cached[1]
    client = _parse(url, _get(core, url))
    with _lock:
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[url] = (now + CACHE_TTL, client)
    return client


def _get(core: Core, url: str) -> bytes:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        port = parts.port or 443
        conn = _PinnedHTTPS(host, port, _public_address(host, port))
    else:
        if parts.port == urllib.parse.urlsplit(core.issuer).port:
            raise UnknownClient("a client's metadata document cannot be served by kontextd itself")
        conn = http.client.HTTPConnection(host, parts.port, timeout=TIMEOUT)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + TIMEOUT
    try:
        conn.request("GET", target, headers={"Accept": "application/json"})
        response = conn.getresponse()
        if 300 <= response.status < 400:
            raise UnknownClient("its metadata document redirects; kontext follows no redirects")
        if response.status != 200:
            raise UnknownClient(f"its metadata document answered HTTP {response.status}")
        return _read(conn, response, deadline)
    except (OSError, http.client.HTTPException) as exc:
        raise UnknownClient(f"cannot fetch its metadata document ({type(exc).__name__})") from exc
    finally:
        conn.close()


def _read(
    conn: http.client.HTTPConnection, response: http.client.HTTPResponse, deadline: float
) -> bytes:
    """At most ``MAX_SIZE`` bytes, within the deadline, however slowly they come."""
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > MAX_SIZE:
        raise UnknownClient(f"its metadata document is larger than {MAX_SIZE} bytes")
    body = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UnknownClient(f"its metadata document took longer than {TIMEOUT:g} s")
        if conn.sock is not None:
            conn.sock.settimeout(left)
        chunk = response.read1(1024)
        if not chunk:
            return body
        body += chunk
        if len(body) > MAX_SIZE:
            raise UnknownClient(f"its metadata document is larger than {MAX_SIZE} bytes")


def _public_address(host: str, port: int) -> str:
    """The address to connect to: every address ``host`` resolves to must be public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnknownClient(f"cannot resolve {host[:80]} ({type(exc).__name__})") from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_global:
            raise UnknownClient(
                f"{host[:80]} resolves to a non-public address ({address}); metadata "
                "documents are fetched over https from public hosts only"
            )
    if not addresses:
        raise UnknownClient(f"cannot resolve {host[:80]}")
    return addresses[0]


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to ``address``, with ``host``'s name for SNI and certificate checks."""

    def __init__(self, host: str, port: int, address: str) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=TIMEOUT, context=self._tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def _parse(url: str, body: bytes) -> PublicClient:
    try:  # depth-limited: its author chooses what it holds
        doc = parsing.json_loads(body)
    except parsing.TooDeep as exc:
        raise UnknownClient(f"its metadata document is {exc}") from exc
    except ValueError as exc:  # bad JSON, or not UTF-8
        raise UnknownClient("its metadata document is not JSON") from exc
    if not isinstance(doc, dict):
        raise UnknownClient("its metadata document is not a JSON object")
    if doc.get("client_id") != url:
        raise UnknownClient("its metadata document names another client_id than its URL")
    if doc.get("token_endpoint_auth_method", "none") != "none":
        raise UnknownClient("kontext takes public clients only (token_endpoint_auth_method none)")
    return PublicClient(
        client_id=url,
        name=_name(doc.get("client_name"), url),
        redirect_uris=_redirects(doc.get("redirect_uris")),
        grant_types=_grant_types(doc.get("grant_types")),
        source="metadata document",
        published_at=urllib.parse.urlsplit(url).netloc,
    )


def _name(raw: Any, url: str) -> str:
    if isinstance(raw, str) and raw.strip() and len(raw) <= MAX_NAME and raw.isprintable():
        return raw.strip()
    return urllib.parse.urlsplit(url).netloc


def _redirects(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_REDIRECTS:
        raise UnknownClient(f"its metadata document needs 1 to {MAX_REDIRECTS} redirect_uris")
    try:
        return tuple(check_redirect_uri(uri) for uri in raw)
    except ValueError as exc:
        raise UnknownClient(f"its metadata document: {exc}") from exc


def _grant_types(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ("authorization_code",)
    if not isinstance(raw, list) or not set(raw) <= set(GRANT_TYPES):
        raise UnknownClient(f"its metadata document may name only grant_types {GRANT_TYPES}")
    return tuple(raw)
