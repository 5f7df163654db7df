"""The library's errors: which one, its one line, and never a token in it.

``Unavailable`` and ``InvalidRequest`` are raised in this process (no exec
needed: there is no authority, or nothing is asked); ``NotConnected`` by a
child of ``kontext exec`` whose integration was never connected.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from pathlib import Path

import pytest
from conftest import Kontext, api_new_agent
from library_harness import RunningAgent

import kontext


def fake_token(claims: dict[str, object]) -> str:
    """A JWT-shaped string (unsigned: the daemon would refuse it; the library only reads iss)."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No authority, no KONTEXT_URL, and a KONTEXT_HOME with no daemon in it."""
    for var in ("KONTEXT_TOKEN", "KONTEXT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KONTEXT_HOME", str(tmp_path))
    return monkeypatch


def test_no_authority_is_unavailable_with_what_to_do(bare_env: pytest.MonkeyPatch) -> None:
    for call in (
        lambda: kontext.require("github"),
        lambda: kontext.client("github"),
        lambda: kontext.async_client("github"),
    ):
        with pytest.raises(kontext.Unavailable) as caught:
            call()
        assert str(caught.value) == (
            "no kontext authority: KONTEXT_TOKEN is not set; run this program under "
            "'kontext exec --agent NAME -- ...' or pass token="
        )
        assert isinstance(caught.value, kontext.KontextError)


def test_no_daemon_is_unavailable_and_the_message_holds_no_token(
    fresh_kx: Kontext, bare_env: pytest.MonkeyPatch
) -> None:
    """A real exec token, then its daemon stopped: nothing answers on its port."""
    fresh_kx.start()
    agent = api_new_agent(fresh_kx, "github:pulls:read")
    proc, env = fresh_kx.token_for(agent)
    fresh_kx.close(proc)
    issuer = fresh_kx.base_url
    fresh_kx.stop()
    token = env["KONTEXT_TOKEN"]
    bare_env.setenv("KONTEXT_TOKEN", token)
    with pytest.raises(kontext.Unavailable) as caught:
        kontext.require("github")
    message = str(caught.value)
    assert message.startswith(f"kontextd at {issuer} refused the connection")
    assert "refused the connection (is it running?)" in message
    assert "kontext daemon start" in message
    assert token not in message and token not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_issuer_off_loopback_is_never_contacted(bare_env: pytest.MonkeyPatch) -> None:
    bare_env.setenv("KONTEXT_TOKEN", fake_token({"iss": "https://evil.example", "jti": "x"}))
    with pytest.raises(kontext.Unavailable, match=re.escape("expected http://127.0.0.1:PORT")):
        kontext.require("github")
    bare_env.setenv("KONTEXT_URL", "http://10.0.0.1:8080")
    with pytest.raises(kontext.Unavailable, match="KONTEXT_URL is not a kontext issuer URL"):
        kontext.require("github")


def test_a_token_handed_in_never_chooses_where_it_is_sent(bare_env: pytest.MonkeyPatch) -> None:
    """``token=`` comes from someone else (an MCP client): its ``iss`` is not trusted."""
    handed = fake_token({"iss": f"http://127.0.0.1:{closed_port()}", "jti": "x"})
    with pytest.raises(kontext.Unavailable, match="no kontext daemon to exchange token= at"):
        kontext.require("github", token=handed)


def test_bad_arguments_are_refused_before_anything_is_asked(
    bare_env: pytest.MonkeyPatch,
) -> None:
    # No authority is set: each of these fails on its argument, before looking for one.
    cases = {
        "GitHub": {},
        "github": {"scopes": "pulls:read"},
        "github ": {},
    }
    for integration, args in cases.items():
        with pytest.raises(kontext.InvalidRequest):
            kontext.require(integration, **args)  # type: ignore[arg-type]
    for args in (
        {"scopes": ["pulls read"]},
        {"scopes": []},
        {"target": "../etc"},
        {"ttl": "forever"},
        {"ttl": 5},
        {"ttl": float("nan")},
        {"ttl": True},
    ):
        with pytest.raises(kontext.InvalidRequest) as caught:
            kontext.require("github", **args)  # type: ignore[arg-type]
        assert isinstance(caught.value, ValueError)
        assert "\n" not in str(caught.value)


def test_an_unconnected_integration_is_not_connected_with_the_command(kx: Kontext) -> None:
    """The session daemon never connected GitHub: the gateway could not forward a call."""
    agent = api_new_agent(kx, "github:pulls:read", prefix="unconnected")
    with RunningAgent(kx, agent) as child:
        out = child.ask("require")
    assert out["error"] == "NotConnected"
    assert out["message"] == "github is not connected: run 'kontext integration connect github'"
    assert out["command"] == "kontext integration connect github"
