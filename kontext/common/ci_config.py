"""``[ci]`` in config.toml: which CI issuers kontext believes, and a CI session's limits.

Shape::

    [ci]
    audience = "kontext"                 # the aud kontext asks CI platforms for, and requires
    max_session = "1h"                   # no federated (CI) session lasts longer
    repository_policy = "protected"      # or "off": only the org's pinned ci.toml counts

    [ci.issuers]                         # besides the two built in (below)
    "https://ghe.acme.com/_services/token" = "github"
    "https://gitlab.acme.com" = "gitlab"
    "https://agent.buildkite.com" = "oidc"

An issuer is believed only if it is built in or named here, with the platform
whose claims it mints (``github``, ``gitlab``, or ``oidc`` for any other); a token
from any other issuer is refused before kontext fetches anything from it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from kontext.common import parsing

GITHUB = "github"
GITLAB = "gitlab"
OIDC = "oidc"
PLATFORMS = (GITHUB, GITLAB, OIDC)
BUILTIN_ISSUERS = {
    "https://token.actions.githubusercontent.com": GITHUB,
    "https://gitlab.com": GITLAB,
}
LOOPBACK_PREFIXES = ("http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://[::1]:")
MAX_ISSUERS = 64
MAX_TOKEN = 16 * 1024
PRINTABLE = frozenset(chr(c) for c in range(0x21, 0x7F))


def issuer_url(value: Any) -> str:
    """An issuer as tokens name it: https (or http on loopback), no query or fragment."""
    if not isinstance(value, str) or not 8 < len(value) <= 256 or not set(value) <= PRINTABLE:
        raise ValueError(f"an issuer must be a URL of at most 256 characters, not {value!r:.80}")
    if not value.startswith("https://") and not value.startswith(LOOPBACK_PREFIXES):
        raise ValueError(f"issuer {value!r} must be https:// (plain http only on loopback)")
    if "?" in value or "#" in value:
        raise ValueError(f"issuer {value!r} must have no query or fragment")
    return value


def audience(value: Any) -> str:
    """The ``aud`` kontext asks for: 1-128 printable characters, no spaces."""
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not set(value) <= PRINTABLE:
        raise ValueError(f"must be 1-128 printable characters without spaces, not {value!r:.80}")
    return value


def _issuers(table: Any) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ValueError("[ci.issuers] must be a table of issuer URL = platform")
    if len(table) > MAX_ISSUERS:
        raise ValueError(f"[ci.issuers] may name at most {MAX_ISSUERS} issuers")
    found = dict(BUILTIN_ISSUERS)
    for url, platform in table.items():
        issuer_url(url)
        if platform not in PLATFORMS:
            raise ValueError(
                f"ci.issuers.{url!r} must be {', '.join(repr(p) for p in PLATFORMS)}, "
                f"not {platform!r:.40}"
            )
        found[url] = platform
    return found


@dataclass(frozen=True)
class CISettings:
    """``[ci]``: the audience, the trusted issuers and the session's limits."""

    audience: str = "kontext"
    max_session: int = 3600
    repository_policy: str = "protected"
    issuers: dict[str, str] = field(default_factory=lambda: dict(BUILTIN_ISSUERS))

    @classmethod
    def parse(cls, table: Any, settable: dict[str, Any]) -> CISettings:
        """``settable``: the already validated ``ci.*`` keys of ``config set``."""
        if not isinstance(table, dict):
            raise ValueError("[ci] must be a table")
        return cls(
            audience=settable["ci.audience"],
            max_session=settable["ci.max_session"],
            repository_policy=settable["ci.repository_policy"],
            issuers=_issuers(table.get("issuers", {})),
        )

    def platform_of(self, issuer: str) -> str | None:
        """The platform a believed issuer mints claims for; None if not believed."""
        return self.issuers.get(issuer)


def holds_token_for(value: str, audience: str) -> bool:
    """Whether ``value`` is a compact JWT whose ``aud`` (read unverified) is or names
    ``audience``: a CI job's token meant for kontext, in whatever variable the job
    put it (``--token-env``, GitLab ``id_tokens`` of any name). No agent needs one,
    so ``kontext exec`` and the daemon it starts never inherit it. Other values cost
    a count of dots."""
    # eyJ: base64url of '{"', how every platform's JWT header begins (RFC 7515 §7.1)
    if value[:3] != "eyJ" or value.count(".") != 2 or len(value) > MAX_TOKEN:
        return False
    part = value.split(".")[1]
    try:
        claims = parsing.json_loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except ValueError:  # bad base64 or JSON, TooDeep, UnicodeDecodeError
        return False
    aud = claims.get("aud") if isinstance(claims, dict) else None
    return aud == audience or (isinstance(aud, list) and audience in aud)
