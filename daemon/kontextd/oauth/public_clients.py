"""Public OAuth clients — MCP clients — and the redirect URIs they may use.

A public client holds no secret (RFC 6749 §2.1): anything on this computer can
claim to be one. It is named either by a registration it made itself (RFC 7591,
``kontextd.oauth.registration``; its id starts ``mcp_``) or by the URL of its
Client ID Metadata Document (``kontextd.oauth.client_metadata``). Either way
what it says about itself is unverified: it can *ask*; only the user, on the
consent page in the browser, can approve.

Its redirect URIs are native-app ones only (RFC 8252): a loopback ``http`` URI
(§7.3; any port at request time) or a private-use scheme in reverse-domain form
(§7.1, ``com.example.app:/callback``). A web redirect would let a site far away
collect the code; these keep it on this computer.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from kontextd.core import Core
from kontextd.store.clients_sql import ClientStore

REGISTERED_PREFIX = "mcp_"
LOOPBACK_REDIRECT_HOSTS = ("127.0.0.1", "::1", "localhost")  # as urlsplit names them
MAX_URI = 512
MAX_REDIRECTS = 10
# RFC 8252 §7.1: a private-use scheme is a reversed domain name (it has a dot);
# RFC 3986 §3.1 scheme characters.
PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+")


class UnknownClient(Exception):
    """The client id names no client we can use; the message says why."""


@dataclass(frozen=True)
class PublicClient:
    """What a public client claims about itself, and where that claim came from."""

    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    source: str  # "registration" or "metadata document"
    published_at: str | None = None  # a metadata document's host (https) or None

    @property
    def refresh(self) -> bool:
        return "refresh_token" in self.grant_types


def enabled(core: Core) -> bool:
    """``mcp.clients`` in config.toml: "allow" (the default) or "off"."""
    return core.config.mcp_clients == "allow"


def off_message(core: Core) -> str:
    return f'MCP clients are turned off (mcp.clients = "off" in {core.paths.config_file})'


def is_public_id(client_id: str | None) -> bool:
    """Does this client id name a public client (a registration or a document URL)?"""
    return bool(client_id) and (
        str(client_id).startswith(REGISTERED_PREFIX)
        or str(client_id).startswith(("https://", "http://"))
    )


def lookup(core: Core, client_id: str | None, *, fetch: bool = True) -> PublicClient:
    """The public client ``client_id`` names; ``UnknownClient`` if none.

    A document URL is fetched (and cached) only with ``fetch``: at ``/authorize``.
    At ``/token`` the code or refresh token already binds the client id and the
    redirect URI checked there, so nothing is fetched again."""
    if not client_id or len(client_id) > MAX_URI:
        raise UnknownClient("client_id is missing or too long")
    if client_id.startswith(REGISTERED_PREFIX):
        row = ClientStore(core.store).get(client_id)
        if row is None:
            raise UnknownClient("this client is not registered here (register at /register)")
        return PublicClient(client_id, row.name, row.redirect_uris, row.grant_types, "registration")
    from kontextd.oauth import client_metadata  # only where documents are used

    if not client_metadata.is_document_url(client_id):
        raise UnknownClient("unknown client")
    if not fetch:
        return PublicClient(client_id, client_id, (), ("authorization_code",), "metadata document")
    return client_metadata.fetch(core, client_id)


def check_redirect_uri(uri: object) -> str:
    """A redirect URI a public client may register; ``ValueError`` says what is wrong."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI or not uri.isprintable():
        raise ValueError(f"a redirect URI must be a string of at most {MAX_URI} characters")
    if any(c.isspace() for c in uri) or "#" in uri:
        raise ValueError("a redirect URI has no spaces and no fragment (RFC 6749 §3.1.2)")
    scheme = uri.partition(":")[0].lower()
    if scheme == "http":
        _loopback(uri)
        return uri
    if scheme != "https" and PRIVATE_SCHEME.fullmatch(scheme):
        return uri
    raise ValueError(
        "redirect URIs must be loopback (http://127.0.0.1:PORT/PATH, [::1] or localhost; "
        "RFC 8252 §7.3) or a private-use scheme such as com.example.app:/callback (§7.1)"
    )


def _loopback(uri: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(uri)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if (
        parts.scheme != "http"
        or parts.username is not None
        or parts.hostname not in LOOPBACK_REDIRECT_HOSTS
        or not port_ok
        or (parts.path and not parts.path.startswith("/"))
    ):
        raise ValueError(
            "an http redirect URI must be on loopback: http://127.0.0.1:PORT/PATH "
            "(or [::1], localhost; RFC 8252 §7.3)"
        )
    return parts


def match_redirect(client: PublicClient, given: str | None) -> str:
    """The redirect URI of this request: one the client registered, exactly, except a
    loopback URI's port, which may be any (RFC 8252 §7.3: the port is picked when the
    app starts). Without one, the client's only registered URI (RFC 6749 §3.1.2.3)."""
    if given is None:
        if len(client.redirect_uris) == 1:
            return client.redirect_uris[0]
        raise UnknownClient("redirect_uri is required: the client registered several")
    if given in client.redirect_uris:
        return given
    if given.startswith("http:"):
        try:
            asked = _loopback(given)
        except ValueError as exc:
            raise UnknownClient(str(exc)) from exc
        for registered in client.redirect_uris:
            if registered.startswith("http:") and _same_but_port(_loopback(registered), asked):
                return given
    raise UnknownClient("redirect_uri is not one this client registered")


def _same_but_port(a: urllib.parse.SplitResult, b: urllib.parse.SplitResult) -> bool:
    return a.hostname == b.hostname and (a.path or "/") == (b.path or "/") and a.query == b.query


def form_action(redirect_uri: str) -> str:
    """The consent page's CSP ``form-action`` source for where its answer redirects."""
    if redirect_uri.startswith("http:"):
        parts = urllib.parse.urlsplit(redirect_uri)
        return f"http://{parts.netloc}"
    return redirect_uri.partition(":")[0] + ":"
