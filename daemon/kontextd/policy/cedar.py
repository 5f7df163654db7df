"""The org-policy layer: Cedar policies from policy.d, evaluated once per scope.

Semantics (documented in the README):

- No policy files: the layer allows — an organisation that wrote no policy has
  not restricted anything.
- Policy files present: plain Cedar — a scope is allowed only if some ``permit``
  matches and no ``forbid`` does (Cedar's default deny, "forbid overrides
  permit"). A request with several scopes is allowed only if every scope is.
- Any file broken (parse, schema, duplicate id): deny everything, naming the
  file and line, until it is fixed. The new set replaces the old in one
  reference swap, so an evaluation sees the old set or the new, never a mix.
- A policy that errors while evaluating is skipped by Cedar; here an error
  denies instead (deny by default: a layer that cannot decide denies).
- ``login.require_external_issuer`` (config) denies before any policy is read
  unless an external OIDC provider signed the user in: with the embedded issuer
  the user is only the OS account, so rules about named users would not bite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import cedarpy

from kontext.common.integrations import Integration
from kontextd.policy import loader, schema
from kontextd.policy.layers import NO_POLICY, ORG_POLICY
from kontextd.policy.request import CredentialRequest, Verdict


class CedarOrgPolicy:
    """Org layer backed by Cedar; reloadable while the daemon runs."""

    name = ORG_POLICY

    def __init__(
        self,
        dirs: list[str],
        catalogue: Callable[[], Mapping[str, Integration]],
        require_external: Callable[[], bool] = lambda: False,
    ):
        self.dirs = dirs
        self._catalogue = catalogue
        self._require_external = require_external
        self._lock = threading.Lock()
        self._state: tuple[str, cedarpy.Schema, loader.Bundle] | None = None
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self.reload()

    @property
    def bundle(self) -> loader.Bundle:
        assert self._state is not None
        return self._state[2]

    @property
    def schema_text(self) -> str:
        assert self._state is not None
        return self._state[0]

    def reload(self) -> loader.Bundle:
        """Read every file again and swap the new set in atomically."""
        with self._lock:
            seen = loader.snapshot(self.dirs)
            text = schema.schema_text(self._catalogue())
            parsed = cedarpy.Schema.from_str(text)
            self._state = (text, parsed, loader.load(self.dirs, parsed))
            self._seen = seen
            return self._state[2]

    def changed(self) -> bool:
        """True if a policy file (or the integration catalogue) changed since the last load."""
        text = schema.schema_text(self._catalogue())
        return loader.snapshot(self.dirs) != self._seen or text != self.schema_text

    def evaluate(self, request: CredentialRequest) -> Verdict:
        """Allow only if every requested scope is allowed (see the module docstring)."""
        assert self._state is not None
        _, parsed, bundle = self._state  # one read: the whole evaluation uses one set
        if self._require_external() and not request.external_login:
            return Verdict(
                self.name,
                "deny",
                f"login.require_external_issuer is set and {request.user} was not signed in "
                "by an external provider; run 'kontext login --issuer URL'",
            )
        if bundle.errors:
            more = f" (and {len(bundle.errors) - 1} more)" if len(bundle.errors) > 1 else ""
            return Verdict(self.name, "deny", f"policy files are broken: {bundle.errors[0]}{more}")
        if bundle.policy_set is None:
            return NO_POLICY
        if not request.scopes:
            return Verdict(self.name, "deny", "nothing was asked for")
        permits: list[str] = []
        for scope in request.scopes:
            verdict = self._one_scope(request, scope, bundle.policy_set, parsed)
            if not verdict.allowed:
                return verdict
            permits += [p for p in verdict.policy_ids if p not in permits]
        return Verdict(self.name, "allow", f"permitted by {', '.join(permits)}", tuple(permits))

    def _one_scope(
        self,
        request: CredentialRequest,
        scope: str,
        policy_set: cedarpy.PolicySet,
        parsed: cedarpy.Schema,
    ) -> Verdict:
        cedar_request, entities = schema.cedar_inputs(request, scope)
        result = cedarpy.is_authorized(cedar_request, policy_set, entities, parsed)
        ids = tuple(result.diagnostics.reasons)
        errors = result.diagnostics.errors
        on = f" on {request.target}" if request.target else ""
        if errors:
            return Verdict(
                self.name, "deny", f"policy evaluation failed for {scope}: {errors[0]}"[:300], ids
            )
        if result.allowed:
            return Verdict(self.name, "allow", f"permitted by {', '.join(ids)}", ids)
        if not ids:
            return Verdict(
                self.name, "deny", f"no policy permits {scope}{on} (Cedar denies by default)"
            )
        return Verdict(self.name, "deny", f"policy {', '.join(ids)} forbids {scope}{on}", ids)
