"""``kontext login --issuer`` against a real third-party provider: npm oidc-provider,
installed by ``.ci/run`` (``npm ci`` in tests/oidc) and started here."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Kontext, api_audit

OIDC_DIR = Path(__file__).resolve().parent.parent / "oidc"
CLIENT = "kontext-test"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (OIDC_DIR / "node_modules" / "oidc-provider").exists(),
    reason="node and tests/oidc/node_modules (npm ci) are needed",
)


@pytest.fixture
def provider() -> Iterator[str]:
    proc = subprocess.Popen(
        ["node", str(OIDC_DIR / "server.mjs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        issuer = proc.stdout.readline().strip()
        assert issuer.startswith("http://127.0.0.1:"), issuer
        yield issuer
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def login(k: Kontext, issuer: str) -> subprocess.CompletedProcess[str]:
    return k.run(
        "login",
        "--issuer",
        issuer,
        "--client-id",
        CLIENT,
        env={"KX_LOGIN": "alice"},
        timeout=90,
        tty=True,
    )


def test_login_with_an_external_provider_and_refused_refresh(
    fresh_kx: Kontext, provider: str
) -> None:
    k = fresh_kx
    k.start()
    done = login(k, provider)
    assert done.returncode == 0, done.stderr
    assert "Logged in as user:alice@example.org" in done.stdout
    who = k.ok("whoami").stdout
    assert "user:alice@example.org" in who and provider in who
    # Still active at the provider: a check refreshes and keeps the session.
    assert "expires:" in k.ok("whoami", "--check").stdout
    agent = k.agent("github:pulls:read")
    assert k.run("exec", "--agent", agent, "--", "true").returncode == 0
    # The provider forgets the user: the next refresh is refused, the session ends.
    httpx.post(f"{provider}/__test__/forget").raise_for_status()
    checked = k.ok("whoami", "--check").stdout
    assert "ended:" in checked and "refused" in checked
    denied = k.run("exec", "--agent", agent, "--", "true")
    assert denied.returncode == 122
    assert "session of user:alice@example.org ended" in denied.stderr
    ended = [e for e in api_audit(k, n=100) if e["event"] == "session.ended"]
    assert ended and "refused" in ended[-1]["reason"]
    # The refresh token never left the daemon.
    assert "refresh" not in done.stdout + done.stderr


def test_external_login_refuses_a_wrong_client(fresh_kx: Kontext, provider: str) -> None:
    fresh_kx.start()
    proc = fresh_kx.run(
        "login",
        "--issuer",
        provider,
        "--client-id",
        "nobody",
        "--timeout",
        "10",
        timeout=60,
        tty=True,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
