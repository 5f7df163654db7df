"""What the library tests share: a gateway daemon, a long-running agent, token checks.

``RunningAgent`` starts ``tests/library/library_agent.py`` under ``kontext exec`` and talks
to it line by line, so one exec (one authority) serves many library calls — the
long-lived agent the library is for. Tokens are verified here the way a resource
server would: signature from the published JWKS with joserfc (not the product's
PyJWT), and liveness by RFC 7662 introspection.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Kontext, gateway_daemon
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from upstream.fake_github import API_KEY, FakeGitHub

AGENT = Path(__file__).parent / "library_agent.py"
READ_WRITE = ("github:pulls:read", "github:pulls:write")
PR = "/repos/acme/backend/pulls/42"
ANSWER_TIMEOUT = 120.0  # generous: a loaded 2-core box must pass


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(github: FakeGitHub) -> Iterator[Kontext]:
    """A daemon of this module's own whose GitHub integration is the fake, connected."""
    with gateway_daemon(github.url, API_KEY) as k:
        yield k


class RunningAgent:
    """``kontext exec --agent NAME [ARGS] -- python library_agent.py``, driven over its stdin."""

    def __init__(self, k: Kontext, agent: str, *exec_args: str) -> None:
        self.name = agent
        self.proc = k.popen(
            "exec", "--agent", agent, *exec_args, "--", sys.executable, str(AGENT),
            stdin=subprocess.PIPE,
        )  # fmt: skip
        ready = self._line()
        self.env: dict[str, str] = ready["env"]

    @property
    def token(self) -> str:
        """The exec's own credential: the authority every library call exchanges."""
        return self.env["KONTEXT_TOKEN"]

    @property
    def jti(self) -> str:
        return self.env["KONTEXT_CREDENTIAL_ID"]

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._line()

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], ANSWER_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"the agent did not answer: {stderr}")
        return dict(json.loads(line))

    def close(self) -> int:
        """Close stdin: the agent exits, and with it the exec and its lease."""
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.wait(timeout=60)

    def __enter__(self) -> RunningAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.close()


def issuer(k: Kontext) -> str:
    with k.http() as http:
        return str(http.get("/.well-known/oauth-authorization-server").json()["issuer"])


def verified(k: Kontext, token: str, keys: KeySet | None = None) -> dict[str, Any]:
    """The claims of ``token``, verified with joserfc against the published JWKS."""
    decoded = jwt.decode(token, keys or KeySet.import_key_set(k.jwks()), algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    JWTClaimsRegistry(
        leeway=0,
        iss={"essential": True, "value": issuer(k)},
        sub={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    return dict(decoded.claims)


def active(k: Kontext, token: str) -> bool:
    return bool(k.introspect(token)["active"])
