"""Shared by the confinement tests: a daemon with an attacker, a victim and a disabled
agent, the attack runner (``agent_side.py`` under ``kontext exec``) and the checks
that nothing changed. Imported by ``test_confinement.py``, ``test_second_wall.py``
and ``test_confine_levels.py``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KONTEXT, Kontext, api_new_agent, confinement_missing, short_home

__all__ = ["KONTEXT", "Kontext", "api_new_agent", "short_home"]

AGENT_SIDE = str(Path(__file__).with_name("agent_side.py"))
PY = sys.executable
VIAS = ["direct", "sh", "setsid", "doublefork"]


MISSING = confinement_missing()
needs_confinement = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


class Setup:
    """One daemon with three agents: the attacker, another, a disabled one."""

    def __init__(self, k: Kontext) -> None:
        self.k = k
        self.agent = api_new_agent(k, "github:pulls:read", "github:pulls:write", prefix="attacker")
        self.other = api_new_agent(k, "github:contents:write", prefix="victim")
        self.disabled = api_new_agent(k, "github:pulls:read", prefix="disabled")
        k.ok("agent", "disable", self.disabled)
        (k.home / "config" / "policy.d").mkdir(parents=True, exist_ok=True)
        k.ok("config", "set", "secrets.fallback", "allow")  # config.toml exists to be attacked

    def spec(self, tmp: Path, groups: list[str], **extra: Any) -> Path:
        k = self.k
        secrets = sorted((k.home / "data" / "secrets").glob("*"))
        spec = {
            "groups": groups,
            "home": str(k.home),
            "socket": str(k.socket),
            "kontext": KONTEXT,
            "agent": self.agent,
            "other_agent": self.other,
            "disabled_agent": self.disabled,
            "evil_agent": f"evil-{tmp.name[-20:].lower().strip('_')}".replace("_", "-"),
            "narrow_scope": "github:pulls:read",
            "database": str(k.database),
            "db_name": k.database.name,
            "secret_files": {
                "database": str(k.database),
                "WAL": f"{k.database}-wal",
                "OAuth client secret": str(k.runtime / "oauth-client-secret"),
                "config.toml": str(k.home / "config" / "config.toml"),
                "daemon log": str(k.log_file),
                "port file": str(k.runtime / "http.json"),
                **{f"fallback secret {p.name[:12]}": str(p) for p in secrets},
            },
            "dirs": {
                "config dir": str(k.home / "config"),
                "data dir": str(k.home / "data"),
                "runtime dir": str(k.runtime),
                "log dir": str(k.home / "log"),
            },
            "policy_dir": str(k.home / "config" / "policy.d"),
            "daemon_pid": k.daemon_pid,
            "outside_pid": os.getpid(),
            "strace": shutil.which("strace"),
            "bus_addresses": [],
            **extra,
        }
        path = tmp / "spec.json"
        path.write_text(json.dumps(spec))
        return path

    def attack(
        self,
        tmp: Path,
        groups: list[str],
        via: str = "direct",
        exec_args: tuple[str, ...] = (),
        agent: str | None = None,
        env: dict[str, str] | None = None,
        **extra: Any,
    ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
        """Run agent_side.py under ``kontext exec``; (the exec, the attacks' results)."""
        spec = self.spec(tmp, groups, **extra)
        out = tmp / "results.json"
        proc = self.k.run(
            "exec",
            "--agent",
            agent or self.agent,
            *exec_args,
            "--",
            PY,
            AGENT_SIDE,
            via,
            str(out),
            str(spec),
            timeout=600,
            env=env,
        )
        assert out.exists(), f"the agent side reported nothing: {proc.returncode} {proc.stderr}"
        return proc, json.loads(out.read_text())["results"]


def state(k: Kontext, other: str) -> dict[str, Any]:
    """Everything an attack might change, seen from outside."""
    with k.control() as api:
        agents = api.get("/v1/agents").json()["agents"]
        consent = api.get("/v1/consent").json()
        kids = sorted(key["kid"] for key in api.get("/v1/keys").json()["keys"])
        integrations = api.get("/v1/integrations").json()
        events = api.get("/v1/audit", params={"last": 10000}).json()["events"]
    files = {}
    for path in sorted((k.home / "config").rglob("*")):
        if path.is_file():
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "agents": sorted(
            (a["name"], a["disabled"], a["session_bus"], tuple(a["scopes"])) for a in agents
        ),
        "consent": consent,
        "kids": kids,
        "integrations": integrations,
        "config files": files,
        "credentials for the other agent": [
            e["jti"]
            for e in events
            if e["event"] == "credential.issued"
            and e.get("agent", {}).get("id") == f"agent:{other}"
        ],
        "daemon pid": k.daemon_pid,
    }


def assert_refused(results: list[dict[str, Any]], expected: int) -> None:
    escaped = [r for r in results if r["escaped"]]
    assert not escaped, json.dumps(escaped, indent=1)
    assert len(results) >= expected, [r["name"] for r in results]


def assert_nothing_changed(setup: Setup, before: dict[str, Any]) -> None:
    k = setup.k
    assert state(k, setup.other) == before
    k.ok("daemon", "status")  # the same daemon still answers
    verify = k.run("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@contextmanager
def daemon_with_agents() -> Iterator[Setup]:
    """A daemon of its own (the tests change its config), for one test module."""
    k = Kontext(short_home())
    k.start()
    try:
        yield Setup(k)
    finally:
        k.stop()
        shutil.rmtree(k.home, ignore_errors=True)


def events(k: Kontext, name: str) -> list[dict[str, Any]]:
    with k.control() as api:
        found = api.get("/v1/audit", params={"last": 10000}).json()["events"]
    return [e for e in found if e["event"] == name]
