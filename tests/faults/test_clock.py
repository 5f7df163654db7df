"""The daemon's wall clock jumps (libfaketime, the monotonic clock untouched, as
when NTP or a user sets the time): no credential lives longer than its TTL.

- set back 8 s while a 14 s credential is live: it dies 14 s after issue, not 22;
- minted while 8 s ahead, then set right: the same;
- set forward an hour: live credentials are past ``exp`` at once (early is safe);
- the same for a token exchanged at ``/token`` (RFC 8693) as for exec's own;
- set past an MCP client's grant (an hour at least): its refresh token ends too.

A token whose ``iat`` is ahead of the wall clock is "not yet valid" meanwhile.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Kontext, api_audit, api_new_agent, wait_until
from tests.oauth import mcp_flows

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
TTL = 14
JUMP = 8


class Clock:
    """The offset file libfaketime re-reads on every call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(0)

    def set(self, offset: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:+d}\n")
        tmp.replace(self.path)


@pytest.fixture
def skewed(fresh_kx: Kontext, tmp_path: Path) -> Iterator[tuple[Kontext, Clock]]:
    if not os.path.exists(LIBFAKETIME):
        pytest.skip("libfaketime is not installed (Debian: faketime)")
    clock = Clock(tmp_path / "faketime")
    env = {
        **fresh_kx.env,
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(clock.path),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "kontextd"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert daemon.stderr is not None
    seen, deadline = b"", time.monotonic() + 30
    while b"kontextd: ready" not in seen and time.monotonic() < deadline:
        if select.select([daemon.stderr], [], [], 1)[0]:
            chunk = os.read(daemon.stderr.fileno(), 65536)
            assert chunk, seen
            seen += chunk
    assert b"kontextd: ready" in seen, seen
    try:
        yield fresh_kx, clock
    finally:
        daemon.terminate()
        daemon.communicate(timeout=30)


def _exchanged(k: Kontext, subject: str) -> tuple[str, str]:
    """An RFC 8693 exchange of ``subject`` for a TTL-second token: (token, jti)."""
    answer = httpx.post(
        f"{k.base_url}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "ttl": f"{TTL}s",
        },
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return token, claims["jti"]


def _lifetime(
    k: Kontext, agent: str, clock: Clock, at_mint: int, after: int, exchanged: bool = False
) -> tuple[float, float]:
    """Mint with the clock at ``at_mint``, move it to ``after``; return how long after
    issue the token went inactive for good (it is "not yet valid" while the wall
    clock is before its ``iat``, and must not come back to life after ``exp``): at
    least and at most, as the exec itself takes a moment. ``exchanged``: the token
    is an RFC 8693 exchange (TTL s) of a 10-minute exec credential."""
    clock.set(at_mint)
    asked = time.monotonic()
    proc, env = k.token_for(agent, *(() if exchanged else ("--ttl", f"{TTL}s")))
    token, jti = env["KONTEXT_TOKEN"], env["KONTEXT_CREDENTIAL_ID"]
    if exchanged:
        asked = time.monotonic()
        token, jti = _exchanged(k, token)
    got = time.monotonic()  # the credential was issued between ``asked`` and ``got``
    try:
        clock.set(after)
        # Back in the valid window once the wall clock passes iat again...
        assert wait_until(
            lambda: k.introspect(token).get("active") is True, timeout=TTL, interval=0.1
        )
        # ...and out of it on time, though the wall clock says exp is JUMP s away.
        assert wait_until(
            lambda: k.introspect(token) == {"active": False}, timeout=TTL + JUMP, interval=0.1
        )
        died = time.monotonic()
        assert wait_until(
            lambda: (
                jti
                in {
                    e.get("jti")
                    for e in api_audit(k, agent=agent)
                    if e["event"] == "credential.expired"
                }
            )
        )
    finally:
        k.close(proc)
    return died - got, died - asked


@pytest.mark.parametrize(
    ("at_mint", "after"), [(0, -JUMP), (JUMP, 0)], ids=["set-back", "minted-ahead-then-back"]
)
def test_a_clock_set_back_does_not_extend_a_credential(
    skewed: tuple[Kontext, Clock], at_mint: int, after: int
) -> None:
    k, clock = skewed
    agent = api_new_agent(k, "github:pulls:read", prefix="clock")
    at_least, at_most = _lifetime(k, agent, clock, at_mint, after)
    assert at_least <= TTL + JUMP / 2, at_least  # without the fix: TTL + JUMP
    assert at_most >= TTL - 1, at_most


def test_a_clock_set_back_does_not_extend_an_exchanged_token(
    skewed: tuple[Kontext, Clock],
) -> None:
    k, clock = skewed
    agent = api_new_agent(k, "github:pulls:read", prefix="clock")
    at_least, at_most = _lifetime(k, agent, clock, 0, -JUMP, exchanged=True)
    assert at_least <= TTL + JUMP / 2, at_least
    assert at_most >= TTL - 1, at_most


def test_a_clock_set_forward_ends_credentials_early(skewed: tuple[Kontext, Clock]) -> None:
    k, clock = skewed
    agent = api_new_agent(k, "github:pulls:read", prefix="clock")
    proc, env = k.token_for(agent)  # the default 10 minutes
    try:
        clock.set(3600)
        assert k.introspect(env["KONTEXT_TOKEN"]) == {"active": False}
    finally:
        k.close(proc)


def test_a_clock_past_the_grants_end_ends_mcp_clients_tokens(
    skewed: tuple[Kontext, Clock],
) -> None:
    """An MCP client's grant lasts an hour at least: with the wall clock moved past
    its end, the client's refresh token (which alone outlives its access tokens) is
    inactive and refused, and nothing minted on the grant is active."""
    k, clock = skewed
    agent = api_new_agent(k, "github:pulls:read", prefix="clock-mcp", consent=False)
    f = mcp_flows.flow(mcp_flows.client_id(k), resource=f"{k.base_url}/gw/github")
    got = mcp_flows.tokens(k, f, agent=agent, grant_duration="3600")
    refreshed = mcp_flows.refresh(k, f, got["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    exchanged, _ = _exchanged(k, fresh["access_token"])
    held = (fresh["refresh_token"], fresh["access_token"], exchanged)
    assert all(k.introspect(t)["active"] for t in held)
    assert k.introspect(fresh["refresh_token"])["exp"] <= time.time() + 3600
    clock.set(3600 + 120)  # the grant's hour is over
    assert [k.introspect(t) for t in held] == [{"active": False}] * 3
    refused = mcp_flows.refresh(k, f, fresh["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
