"""The gateway's in-memory state, one per daemon (``Core.gateway``).

Provider access tokens are cached here only — never written to the database,
the log or the audit; after a restart the daemon refreshes them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

PENDING_TTL = 600.0  # seconds a started OAuth connect may take (the user is in a browser)


@dataclass
class AccessToken:
    """A provider access token and when it expires; ``repr`` hides the value."""

    value: str
    expires_at: float | None

    def __repr__(self) -> str:
        return f"AccessToken(value=<redacted>, expires_at={self.expires_at})"


@dataclass
class PendingConnect:
    """A started ``integration connect``: the PKCE verifier never leaves the daemon."""

    integration: str
    verifier: str
    redirect_uri: str
    created: float = field(default_factory=time.monotonic)

    def __repr__(self) -> str:
        return f"PendingConnect(integration={self.integration!r}, verifier=<redacted>)"

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.created > PENDING_TTL


class GatewayState:
    """Access-token cache, pending connects and the shared upstream HTTP client."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # one refresh at a time: rotation makes a race lose
        self.access: dict[str, AccessToken] = {}
        self.pending: dict[str, PendingConnect] = {}
        self.verified: dict[str, dict[str, Any]] = {}  # token -> claims whose signature held
        self.records: dict[str, dict[str, Any] | None] = {}  # integration -> stored connection
        self._client: Any = None
        self._async_client: Any = None
        self._pool: Any = None
        self._proxied: dict[str, bool] = {}
        self.refusals: Any = None  # the loopback server's RefusalLog, for unauthenticated calls
        self.defer: Any = None  # the loopback server's group commit, for api.call events

    def client(self) -> Any:
        """The pooled httpx client, made on first use (the daemon starts faster without it)."""
        with self.lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    timeout=httpx.Timeout(30.0, connect=10.0),
                    follow_redirects=False,  # a 3xx goes back to the caller as it came
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                    # HTTPS_PROXY is honoured as curl does; https stays end to end (CONNECT).
                )
                # httpx adds these to every request; the caller's own must be the only
                # ones, or an upstream would gzip for a client that cannot gunzip.
                for name in ("Accept", "Accept-Encoding"):
                    del self._client.headers[name]
            return self._client

    def upstream_pool(self) -> Any:
        """The gateway's own upstream client (``upstream.Pool``), made on the loop."""
        if self._pool is None:
            from kontextd.gateway.upstream import Pool

            self._pool = Pool()
        return self._pool

    def proxied(self, url: str) -> bool:
        """Does the environment send ``url``'s origin through a proxy? (Asked once each.)"""
        origin = url.split("/", 3)[:3]
        key = "/".join(origin)
        if key not in self._proxied:
            from kontextd.gateway.upstream import uses_proxy

            self._proxied[key] = uses_proxy(url)
        return self._proxied[key]

    def async_client(self) -> Any:
        """``httpx.AsyncClient`` for upstreams behind a proxy (made on the loop, on first use)."""
        if self._async_client is None:
            import httpx

            self._async_client = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, connect=10.0),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=128, max_keepalive_connections=64),
            )
            for name in ("Accept", "Accept-Encoding"):
                del self._async_client.headers[name]
        return self._async_client

    def close(self) -> None:
        with self.lock:
            if self._client is not None:
                self._client.close()
                self._client = None
