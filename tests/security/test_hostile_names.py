"""Agent names, scopes, targets and durations with path separators, NULs, unicode
look-alikes and huge lengths — through the CLI and the control API.

Each is refused with one clear line (CLI exit 2 or 125 for exec) or a 400 with a
wire code; nothing is created, nothing lands on disk, and the hostile value is never
echoed back unescaped (a terminal escape or bidi override cannot reach the screen).
"""

from __future__ import annotations

import sys

import pytest

from tests.conftest import Kontext, api_new_agent

HOSTILE = {
    "slash": "../../etc/passwd",
    "backslash": "a\\b",
    "nul": "pr\x00reviewer",
    "newline": "pr\nreviewer",
    "escape": "pr\x1b[31mreviewer",
    "fullwidth": "ｐｒ-ｒｅｖｉｅｗｅｒ",
    "cyrillic-a": "\u0430gent",
    "zero-width": "pr\u200breviewer",
    "bidi-override": "pr\u202ereviewer",
    "huge": "a" * 60_000,  # under the 64 KiB body limit: the validator refuses it
    "over-the-body-limit": "a" * 200_000,  # 413 before any parsing
    "empty": "",
    "dot": ".",
    "colon": "agent:agent:x",
}
# A NUL cannot be in argv; one argument is at most 128 KiB on Linux.
ARGV_SAFE = {k: v for k, v in HOSTILE.items() if "\x00" not in v and 0 < len(v) < 100_000}
REFUSED = {400: "invalid", 404: "not_found", 413: "too_large"}


def _names(k: Kontext) -> set[str]:
    with k.control() as api:
        return {a["name"] for a in api.get("/v1/agents").json()["agents"]}


def _files(k: Kontext) -> set[str]:
    return {str(p) for p in k.home.rglob("*")}


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_control_api_refuses_hostile_agent_names(kx: Kontext, label: str) -> None:
    before_names, before_files = _names(kx), _files(kx)
    with kx.control() as api:
        answer = api.post(
            "/v1/agents", json={"name": HOSTILE[label], "allow": ["github:pulls:read"]}
        )
    assert answer.status_code in (400, 413), answer.text
    error = answer.json()["error"]
    assert error["code"] == REFUSED[answer.status_code] and len(error["message"]) < 400
    assert "\x1b" not in answer.text and "\u202e" not in error["message"]
    assert _names(kx) == before_names
    assert {f for f in _files(kx) - before_files if not f.endswith(("-wal", "-shm"))} == set()


@pytest.mark.parametrize("label", sorted(ARGV_SAFE))
def test_cli_refuses_hostile_agent_names_in_one_line(kx: Kontext, label: str) -> None:
    proc = kx.run("agent", "create", ARGV_SAFE[label], "--allow", "github:pulls:read")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kontext: ") and len(lines[0]) < 400
    assert "\x1b" not in proc.stderr and "\u202e" not in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("label", sorted(HOSTILE))
@pytest.mark.parametrize("field", ["scopes", "target", "ttl", "agent"])
def test_credential_requests_with_hostile_fields_are_400(
    kx: Kontext, field: str, label: str
) -> None:
    agent = _agent(kx)
    body: dict[str, object] = {"agent": agent, "scopes": ["github:pulls:read"]}
    value = HOSTILE[label]
    body[field] = [value] if field == "scopes" else value
    with kx.control() as api:
        answer = api.post("/v1/credentials", json=body)
        live = api.get("/v1/credentials", params={"agent": agent}).json()
    assert answer.status_code in REFUSED, answer.text
    assert answer.json()["error"]["code"] == REFUSED[answer.status_code]
    assert "\x1b" not in answer.text
    assert live["credentials"] == []


@pytest.mark.parametrize(
    ("option", "label"),
    [
        (o, label)
        for o in ("--target", "--ttl", "--scope")
        for label in ("slash", "fullwidth", "bidi-override", "huge", "escape", "newline")
    ],
)
def test_exec_refuses_hostile_values_with_125(kx: Kontext, option: str, label: str) -> None:
    agent = _agent(kx)
    value = ARGV_SAFE[label]
    proc = kx.run("exec", "--agent", agent, option, value, "--", sys.executable, "-c", "0")
    assert proc.returncode == 125, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kontext: ") and len(lines[0]) < 400
    assert "\x1b" not in proc.stderr and "\u202e" not in proc.stderr


_AGENTS: dict[int, str] = {}


def _agent(k: Kontext) -> str:
    """One consented agent per daemon for these tests (they never get a credential)."""
    key = id(k)
    if key not in _AGENTS:
        _AGENTS[key] = api_new_agent(k, "github:pulls:read", prefix="hostile")
    return _AGENTS[key]
