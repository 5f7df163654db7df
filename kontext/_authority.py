"""The authority a credential is exchanged from, and the daemon to exchange it at.

The authority is a kontext token: by default the process's own ``KONTEXT_TOKEN``
(its ``kontext exec`` lease credential), or one passed as ``token=`` (e.g. the
bearer token an MCP tool server received). It is only ever sent to the daemon's
loopback issuer, found in this order:

1. ``KONTEXT_URL`` — what ``kontext exec`` sets for its child;
2. for the process's own ``KONTEXT_TOKEN``: the token's ``iss`` claim (it came
   from the same environment as ``KONTEXT_URL`` would);
   for ``token=``: the local daemon's ``http.json`` in the runtime directory
   (readable by this OS user's processes that ``kontext exec`` does not confine).

A token handed in by someone else (``token=``) never chooses where it is sent:
its ``iss`` would let the sender point this process at a listener of its own.
Whatever the source, the issuer must be plain HTTP on a loopback address — the
daemon never listens anywhere else (DESIGN.md, components).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

from kontext._errors import Unavailable
from kontext.common.wire import ENV_TOKEN

ENV_URL = "KONTEXT_URL"  # set by kontext exec for its child: the loopback issuer
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
EXEC_HINT = "run this program under 'kontext exec --agent NAME -- ...' or pass token="


@dataclass(frozen=True)
class Authority:
    """A subject token and the issuer it belongs to; ``repr`` hides the token."""

    token: str
    issuer: str
    source: str  # "KONTEXT_TOKEN" or "token=": named in error messages
    jti: str | None

    def __repr__(self) -> str:
        return f"Authority(issuer={self.issuer!r}, source={self.source!r}, token=<redacted>)"


def resolve(token: str | None) -> Authority:
    """The authority for one call: ``token`` if given, else ``KONTEXT_TOKEN``."""
    if token is not None:
        if not isinstance(token, str) or not token.strip():
            raise Unavailable("token= is empty: pass the kontext token to exchange")
        claims = claims_of(token)
        issuer = _env_issuer() or _local_daemon()
        if issuer is None:
            raise Unavailable(
                "no kontext daemon to exchange token= at: set KONTEXT_URL to its "
                "issuer URL (http://127.0.0.1:PORT), or start kontextd for this user"
            )
        return Authority(token.strip(), issuer, "token=", _jti(claims))
    own = os.environ.get(ENV_TOKEN, "").strip()
    if not own:
        raise Unavailable(f"no kontext authority: {ENV_TOKEN} is not set; {EXEC_HINT}")
    claims = claims_of(own)
    issuer = _env_issuer() or _claimed_issuer(claims)
    return Authority(own, issuer, ENV_TOKEN, _jti(claims))


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified: only to read ``iss``/``jti``/``exp`` locally —
    the daemon verifies every token it is sent. Never raises with the token in
    the message."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return {}
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def loopback_issuer(url: str, where: str) -> str:
    """``url`` if it is ``http://LOOPBACK:PORT`` (no path), else ``Unavailable``."""
    try:
        parsed = urllib.parse.urlsplit(url.strip())
        port = parsed.port
    except ValueError:
        parsed, port = None, None
    if (
        parsed is None
        or parsed.scheme != "http"
        or parsed.hostname not in LOOPBACK_HOSTS
        or port is None
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.username is not None
    ):
        raise Unavailable(
            f"{where} is not a kontext issuer URL: expected http://127.0.0.1:PORT "
            "(kontextd listens on loopback only)"
        )
    return url.strip().rstrip("/")


def _env_issuer() -> str | None:
    url = os.environ.get(ENV_URL, "").strip()
    return loopback_issuer(url, ENV_URL) if url else None


def _local_daemon() -> str | None:
    """The issuer this OS user's daemon published in its runtime dir, if readable."""
    from kontext.common import paths

    try:
        with open(paths.resolve().http_info, encoding="utf-8") as fh:
            info = json.load(fh)
        port = int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"http://127.0.0.1:{port}"


def _claimed_issuer(claims: dict[str, Any]) -> str:
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        raise Unavailable(f"{ENV_TOKEN} is not a kontext token (no issuer); {EXEC_HINT}")
    return loopback_issuer(issuer, f"the issuer of {ENV_TOKEN}")


def _jti(claims: dict[str, Any]) -> str | None:
    jti = claims.get("jti")
    return jti if isinstance(jti, str) else None
