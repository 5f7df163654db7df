"""Who may ask the embedded issuer for anything: the CLI's clients and their secret.

Two kinds of client exist: ``kontext`` (the CLI's login) and ``agent:NAME`` (an
agent asking the user's consent). Both authenticate with one client secret,
created at start in a 0600 file in the 0700 runtime directory: only this OS user
can read it, so only this OS user can push an approvable request (RFC 9126).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import secrets
import urllib.parse
from dataclasses import dataclass

from kontextd.core import Core
from kontextd.store.rows import AgentRow

LOGIN_CLIENT = "kontext"
SECRET_FILE = "oauth-client-secret"  # noqa: S105 - a file name
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]")


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: ``error`` code, description, HTTP status, and any
    extension members of the error body (§5.2 allows more; see ``/token`` exchange's
    ``denied_by``)."""

    def __init__(
        self, error: str, description: str, status: int = 400, extra: dict[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.extra = extra or {}

    def body(self) -> dict[str, str]:
        return {**self.extra, "error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class Client:
    client_id: str
    agent: AgentRow | None

    @property
    def is_login(self) -> bool:
        return self.agent is None

    @property
    def display_name(self) -> str:
        return self.agent.display_name if self.agent else "kontext"


def create_secret(runtime_dir: str) -> str:
    """A fresh secret per daemon start, born 0600 (O_EXCL after removing any old one)."""
    path = os.path.join(runtime_dir, SECRET_FILE)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def resolve(core: Core, client_id: str | None) -> Client:
    """The client, or ``invalid_client``: unknown ids and disabled agents are refused."""
    if client_id == LOGIN_CLIENT:
        return Client(LOGIN_CLIENT, None)
    if client_id and client_id.startswith("agent:"):
        agent = core.store.agent(client_id[6:])
        if agent is not None and agent.disabled_at is None:
            return Client(client_id, agent)
    raise OAuthError("invalid_client", "unknown client", 401)


def basic_credentials(authorization: str) -> tuple[str, str]:
    """(client_id, secret) from an ``Authorization: Basic`` header, either spelling.

    RFC 6749 §2.3.1 form-encodes both parts before joining them with ``:``
    (``agent%3Aox:SECRET``), but many client libraries do not (Authlib sends
    ``agent:ox:SECRET``). Both read the same here, unambiguously, because the
    secret is base64url (``secrets.token_urlsafe``): it never holds a ``:``, so the
    last ``:`` is always the separator, and a client id never holds ``%`` or ``+``
    (``kontext`` or ``agent:NAME``), so decoding leaves a raw one unchanged.
    """
    try:
        raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
    user, colon, password = raw.rpartition(":")
    if not colon:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401)
    # application/x-www-form-urlencoded (RFC 6749 Appendix B): '+' is a space.
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


def authenticate(
    core: Core, secret: str, authorization: str | None, form: dict[str, str]
) -> Client:
    """RFC 6749 §2.3.1: client_secret_basic or client_secret_post, compared in constant time."""
    client_id, given = form.get("client_id"), form.get("client_secret")
    if authorization and authorization.lower().startswith("basic "):
        client_id, given = basic_credentials(authorization)
    if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
        raise OAuthError("invalid_client", "client authentication failed", 401)
    return resolve(core, client_id)


def check_redirect(uri: str | None) -> str:
    """A loopback redirect (RFC 8252 §7.3): ``http``, 127.0.0.1 or [::1], any port.

    The path is registered per request: pushed requests come from an
    authenticated client (RFC 9126 §2.4), and the CLI picks an unguessable path.
    Everything after that must match the pushed URI exactly.
    """
    if not uri or len(uri) > 512:
        raise OAuthError("invalid_request", "redirect_uri is missing or too long")
    parts = urllib.parse.urlsplit(uri)
    host = parts.netloc.rpartition(":")[0]
    port = parts.netloc.rpartition(":")[2]
    if (
        parts.scheme != "http"
        or host not in LOOPBACK_HOSTS
        or not port.isdigit()
        or parts.fragment
        or "@" in parts.netloc
        or not parts.path.startswith("/")
    ):
        raise OAuthError(
            "invalid_request", "redirect_uri must be http://127.0.0.1:PORT/PATH (or [::1])"
        )
    return uri
