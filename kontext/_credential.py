"""``Credential``: one short-lived token for one integration, and how to end it.

A credential is what ``require`` returns: the token, where to use it (the
daemon's gateway for the integration), what it allows and until when. Its
``repr`` never shows the token. Used as a context manager (``with`` or ``async
with``) it is revoked when the block ends (RFC 7009 at the daemon's
``/revoke``), so it is dead before the next line runs — not 60 s later.
"""

from __future__ import annotations

import datetime as dt
import time
from types import TracebackType

from kontext import _transport
from kontext._errors import KontextError, Unavailable


class Credential:
    """A credential minted for this call by RFC 8693 token exchange.

    Attributes:
        integration: the integration it is for (``"github"``).
        jti: its unique id (the token's ``jti``), as the audit log and
            ``kontext revoke credential JTI`` name it.
        scopes: the scopes it carries, qualified (``"github:pulls:read"``).
        target: the one resource it is limited to (``"acme/backend"``), or None.
        expires_at: when it stops working (timezone-aware, UTC).
        agent: the agent it acts for (``"agent:pr-reviewer"``).
        parent: the ``jti`` of the authority it was exchanged from, when known.
        base_url: the daemon's gateway for the integration — use it as the API's
            base URL (it is ``GITHUB_API_URL``'s value under ``kontext exec``).
    """

    __slots__ = (
        "_issuer",
        "_revoked",
        "_token",
        "agent",
        "base_url",
        "expires_at",
        "integration",
        "jti",
        "parent",
        "scopes",
        "target",
    )

    def __init__(
        self,
        *,
        token: str,
        issuer: str,
        integration: str,
        jti: str,
        scopes: tuple[str, ...],
        target: str | None,
        expires_at: float,
        agent: str | None,
        parent: str | None,
    ) -> None:
        self._token = token
        self._issuer = issuer
        self._revoked = False
        self.integration = integration
        self.jti = jti
        self.scopes = scopes
        self.target = target
        self.expires_at = dt.datetime.fromtimestamp(expires_at, dt.UTC)
        self.agent = agent
        self.parent = parent
        self.base_url = f"{issuer}/gw/{integration}"

    @property
    def token(self) -> str:
        """The access token (an RFC 9068 JWT). Send it only to ``base_url``."""
        return self._token

    @property
    def headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer …"}``: a new dict each time, yours to extend."""
        return {"Authorization": f"Bearer {self._token}"}

    @property
    def expires_in(self) -> float:
        """Seconds left before it expires (0 when it has)."""
        return max(0.0, self.expires_at.timestamp() - time.time())

    @property
    def revoked(self) -> bool:
        """Whether ``revoke`` (or the end of a ``with`` block) has ended it."""
        return self._revoked

    def __repr__(self) -> str:
        state = " revoked" if self._revoked else ""
        return (
            f"<Credential{state} {self.integration} jti={self.jti!r} "
            f"scopes={' '.join(self.scopes)!r} target={self.target!r} "
            f"expires_at={self.expires_at.isoformat(timespec='seconds')} token=<redacted>>"
        )

    def revoke(self) -> None:
        """End it now at the daemon (RFC 7009); audited as ``credential.revoked``.
        Revoking twice is harmless. Raises ``Unavailable`` if the daemon cannot be
        reached (then the credential cannot be used either: only that daemon
        honours it)."""
        if not self._revoked:
            _check_revoked(_transport.post_form(self._issuer, "/revoke", self._revoke_form()))
            self._revoked = True

    async def arevoke(self) -> None:
        """``revoke`` for asyncio."""
        if not self._revoked:
            answer = await _transport.apost_form(self._issuer, "/revoke", self._revoke_form())
            _check_revoked(answer)
            self._revoked = True

    def _revoke_form(self) -> dict[str, str]:
        return {"token": self._token, "token_type_hint": "access_token"}

    def __enter__(self) -> Credential:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.revoke()
        except KontextError:
            if exc is None:
                raise  # otherwise the block's own exception is the one to see

    async def __aenter__(self) -> Credential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.arevoke()
        except KontextError:
            if exc is None:
                raise


def _check_revoked(answer: _transport.Reply) -> None:
    if answer.status != 200:  # RFC 7009 §2.2: 200 whatever the token was
        raise Unavailable(f"kontextd did not revoke the credential (HTTP {answer.status})")
