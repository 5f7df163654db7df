"""The daemon's shared state, handed to every API handler and background task."""

from __future__ import annotations

import contextvars
import os
import pwd
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from kontext.common import wire
from kontext.common.config import Config
from kontext.common.paths import Paths
from kontextd.audit.anchor import AnchorStore
from kontextd.callers import Trees
from kontextd.consent.layer import GrantConsent
from kontextd.dashboard.access import DashboardAccess
from kontextd.errors import ApiError
from kontextd.federation.layer import SessionConsent, TrustConsent
from kontextd.gateway.state import GatewayState
from kontextd.policy.cedar import CedarOrgPolicy
from kontextd.policy.layers import AgentPermissions, Layer
from kontextd.policy.loader import policy_dirs
from kontextd.secrets import SecretStore
from kontextd.store.db import Store
from kontextd.store.federation_sql import FederationStore
from kontextd.store.oauth_sql import OAuthStore
from kontextd.tokens.keys import KeyRing

# The control connection's peer while one of its requests runs (set by ControlHandler):
# audit events name the real caller — its pid, and the agent when it is one.
CALLER: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "kontextd_caller", default=None
)


def local_account() -> str:
    """``LOGIN@HOST`` of the uid the daemon runs as — from the password database,
    never from ``$USER``/``$LOGNAME``, which whoever started the daemon could set."""
    try:
        login = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no passwd entry (containers)
        login = f"uid{os.getuid()}"
    return f"{login}@{socket.gethostname()}"


def local_user() -> str:
    """``user:LOGIN@HOST`` — the local account, until ``kontext login`` names the user."""
    return f"user:{local_account()}"


@dataclass
class Core:
    """Everything a request needs: config, store, keys, the request-path layers."""

    paths: Paths
    config: Config
    store: Store
    secrets: SecretStore
    keys: KeyRing
    issuer: str
    user: str = field(default_factory=local_user)
    # Who vouched for ``user``: the issuer of the live login session ("" for the
    # local account) and whether it is an external provider. Kept beside ``user``
    # by ``oauth.session``; the org policy sees them (``context.issuer``, …).
    login_issuer: str = ""
    login_external: bool = False
    layers: list[Layer] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    gateway: GatewayState = field(default_factory=GatewayState)
    anchors: AnchorStore | None = None  # the audit trust anchor (None: not pinned here)
    dashboard: DashboardAccess = field(default_factory=DashboardAccess)  # links, sessions
    trees: Trees = field(default_factory=Trees)  # live exec process trees (kernel facts)

    def __post_init__(self) -> None:
        if not self.layers:
            org = CedarOrgPolicy(
                policy_dirs(self.paths.config),
                lambda: self.config.integrations,
                lambda: self.config.require_external_issuer,
            )
            # Grants for a browser login, the trust policy for a CI session; both read
            # the store through narrow views and need no core.
            consent = SessionConsent(
                GrantConsent(OAuthStore(self.store)),
                TrustConsent(FederationStore(self.store)),
            )
            self.layers = [org, consent, AgentPermissions()]

    @property
    def org_policy(self) -> CedarOrgPolicy | None:
        """The Cedar org layer, for reload, check and explain."""
        return next((x for x in self.layers if isinstance(x, CedarOrgPolicy)), None)

    def user_ref(self) -> dict[str, Any]:
        """The ``user`` of an audit event, with the calling process when a control
        request (not the daemon itself) caused it."""
        caller = CALLER.get()
        return {"id": self.user, "caller": caller} if caller else {"id": self.user}

    def caller_name(self) -> str:
        """Who asked, in words: the user, or ``agent:NAME (pid N)``."""
        caller = CALLER.get()
        if caller and caller.get("agent"):
            return f"{caller['agent']} (pid {caller['pid']})"
        return self.user

    def secrets_check(self) -> None:
        """Refuse to sign when secrets sit in the file fallback and config now refuses it."""
        if self.secrets.is_fallback and self.secrets.fallback_policy == "refuse":
            raise ApiError(
                wire.SECRETS,
                "secrets are in the plaintext-file fallback and secrets.fallback is 'refuse'; "
                "set up an OS keyring or run 'kontext config set secrets.fallback allow'",
            )
