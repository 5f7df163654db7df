"""The user-consent layer: allow only what the user approved for this agent.

Consent is asked only for what org policy and the agent's own permissions
allow; a request they refuse is reported under their name, so a user is never
sent to a consent page for something that would be refused anyway.
"""

from __future__ import annotations

import time

from kontextd.consent import grants
from kontextd.core import Core
from kontextd.oauth.state import for_core
from kontextd.policy.layers import USER_CONSENT
from kontextd.policy.request import CredentialRequest, Verdict


def grant_command(request: CredentialRequest) -> str:
    """The exact command that approves this request ahead of time."""
    parts = ["kontext consent grant", f"agent:{request.agent_name}"]
    parts += [f"--scope {s}" for s in request.scopes]
    if request.target is not None:
        parts.append(f"--target {request.target}")
    return " ".join(parts)


class GrantConsent:
    """Allows a request covered by a live grant of the current session."""

    name = USER_CONSENT

    def __init__(self, core: Core) -> None:
        self.core = core

    def evaluate(self, request: CredentialRequest) -> Verdict:
        session = for_core(self.core).db.current_session()
        if session is not None and session.ended_at is not None:
            return Verdict(
                self.name,
                "deny",
                f"the login session of {session.user} ended ({session.end_reason}); "
                "run 'kontext login'",
            )
        if session is not None and session.expires_at <= time.time():
            return Verdict(
                self.name,
                "deny",
                f"the login session of {session.user} expired; run 'kontext login'",
            )
        who = f"agent:{request.agent_name}"
        grant = grants.covering(
            self.core, request.user, request.agent_name, request.scopes, request.target
        )
        if grant is None:
            return Verdict(
                self.name,
                "deny",
                f"{request.user} has not approved {' '.join(request.scopes) or 'any scope'} "
                f"for {who}; approve with: {grant_command(request)}",
            )
        return Verdict(self.name, "allow", f"{request.user} approved {who} (grant {grant.id})")
