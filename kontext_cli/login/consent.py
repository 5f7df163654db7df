"""Ask the user, in the browser, to approve scopes for one agent.

An authorization-code + PKCE request with ``client_id`` = the agent, the
scopes, the integration as ``resource`` (RFC 8707) and the target. The daemon
redeems the code over the control socket and records the grant; no token is
minted for it — credentials come only from ``kontext exec`` and exchanges.
"""

from __future__ import annotations

from typing import Any

from kontext.common.paths import Paths
from kontext_cli import client, errors
from kontext_cli.login import flow, local

DEFAULT_TIMEOUT = 300.0


def grant_command(client_id: str, scopes: list[str], target: str | None) -> str:
    """The ``kontext consent grant`` line that approves exactly this, for messages."""
    words = ["kontext consent grant", client_id, *(f"--scope {s}" for s in scopes)]
    if target is not None:
        words.append(f"--target {target}")
    return "'" + " ".join(words) + "'"


def obtain(
    paths: Paths,
    agent: str,
    scopes: list[str],
    target: str | None,
    duration: int | None = None,
    *,
    open_browser: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Run the consent flow; returns the grant (id, scopes, expiry) or raises Denied."""
    client_id = f"agent:{agent}"
    flow.require_person(
        f"consent for {client_id}",
        open_browser=open_browser,
        beforehand="approve it beforehand at a terminal with "
        + grant_command(client_id, scopes, target),
    )
    issuer, secret = local.issuer_and_secret(paths)
    meta = flow.discover(issuer)
    extra = {"scope": " ".join(scopes)}
    integrations = sorted({s.partition(":")[0] for s in scopes})
    if len(integrations) == 1:
        extra["resource"] = integrations[0]
    if target is not None:
        extra["target"] = target
    if duration is not None:
        extra["grant_duration"] = str(duration)
    result, session, redirect_uri = flow.authorize(
        meta,
        client_id,
        extra,
        secret=secret,
        open_browser=open_browser,
        timeout=timeout,
        action=f"consent for {client_id}",
    )
    if result.error is not None or result.code is None:
        raise errors.Denied(f"consent for {client_id} was not given ({result.error or 'no code'})")
    # The daemon redeems the code (PKCE-checked as at /token) and records the grant;
    # no token is minted: credentials come only from exec and the agent's own exchanges.
    body = {
        "agent": client_id,
        "code": result.code,
        "code_verifier": session.take_verifier(),
        "redirect_uri": redirect_uri,
    }
    with client.connect(paths) as conn:
        answer: dict[str, Any] = conn.call("POST", "/v1/consent/redeem", body)
    return answer
