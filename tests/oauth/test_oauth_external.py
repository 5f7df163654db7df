"""``kontext login --issuer`` against a real third-party provider: npm oidc-provider,
installed by ``.ci/run`` (``npm ci`` in tests/oidc) and started here."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Kontext, api_audit, one_line_error

OIDC_DIR = Path(__file__).resolve().parent.parent / "oidc"
CLIENT = "kontext-test"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (OIDC_DIR / "node_modules" / "oidc-provider").exists(),
    reason="node and tests/oidc/node_modules (npm ci) are needed",
)


@pytest.fixture
def provider() -> Iterator[str]:
    yield from _provider()


@pytest.fixture
def strict_provider() -> Iterator[str]:
    """The library's defaults as OIDC Core reads: pushed requests required, and with
    response_type=code the user's email and name only on UserInfo."""
    yield from _provider("--par-required", "--userinfo-claims")


@pytest.fixture
def unverified_provider() -> Iterator[str]:
    """A provider that sends the email without ``email_verified``."""
    yield from _provider("--unverified-email")


def _provider(*flags: str) -> Iterator[str]:
    proc = subprocess.Popen(
        ["node", str(OIDC_DIR / "server.mjs"), *flags],
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


def test_an_email_the_provider_did_not_verify_names_no_one(
    fresh_kx: Kontext, unverified_provider: str
) -> None:
    """An email without ``email_verified: true`` is whatever the account's owner typed:
    the user is ``ISSUER#SUB``, so no org rule about users is met by typing an address."""
    k = fresh_kx
    k.start()
    done = login(k, unverified_provider)
    assert done.returncode == 0, done.stderr
    assert f"Logged in as user:{unverified_provider}#alice" in done.stdout, done.stdout
    assert "alice@example.org" not in k.ok("whoami").stdout


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


def test_login_pushes_to_a_provider_that_requires_it_and_reads_userinfo(
    fresh_kx: Kontext, strict_provider: str, tmp_path: Path
) -> None:
    k = fresh_kx
    k.start()
    meta = httpx.get(f"{strict_provider}/.well-known/openid-configuration").json()
    assert meta["require_pushed_authorization_requests"] is True
    log = tmp_path / "visited"
    done = k.run(
        "login",
        "--issuer",
        strict_provider,
        "--client-id",
        CLIENT,
        env={"KX_LOGIN": "alice", "KX_BROWSER_LOG": str(log)},
        timeout=90,
        tty=True,
    )
    assert done.returncode == 0, done.stderr
    # RFC 9126 §4: the browser got only the request_uri from the push, not the request.
    url = next(line for line in done.stderr.splitlines() if "/auth?" in line)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url.strip()).query))
    assert set(query) == {"client_id", "request_uri"}, query
    assert query["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    # The ID token carried no email; UserInfo did: the user is the email, not ISSUER#sub.
    assert "Logged in as user:alice@example.org" in done.stdout, done.stdout
    assert "user:alice@example.org" in k.ok("whoami").stdout


EXAMPLES = Path(__file__).resolve().parent.parent.parent / "docs" / "policy-examples"


def test_the_shipped_user_rules_hold_once_a_provider_names_the_user(
    fresh_kx: Kontext, provider: str
) -> None:
    """docs/policy-examples/40: only a user an external provider signed in gets
    credentials, and a disabled one gets none (SECURITY.md, 17.9)."""
    k = fresh_kx
    policy_d = k.home / "config" / "policy.d"
    policy_d.mkdir(parents=True)
    shutil.copy(EXAMPLES / "00-baseline.cedar", policy_d)
    shutil.copy(EXAMPLES / "40-no-disabled-users.cedar", policy_d)
    k.start()
    assert login(k, provider).returncode == 0
    agent = k.agent("github:pulls:read")
    assert k.run("exec", "--agent", agent, "--", "true").returncode == 0
    rule = (policy_d / "40-no-disabled-users.cedar").read_text()
    (policy_d / "40-no-disabled-users.cedar").write_text(
        rule.replace("mallory@acme.com", "alice@example.org")
    )
    k.ok("policy", "reload")
    denied = k.run("exec", "--agent", agent, "--", "true")
    assert denied.returncode == 122 and "no-disabled-users" in denied.stderr


def test_require_external_issuer_refuses_the_embedded_one(fresh_kx: Kontext, provider: str) -> None:
    k = fresh_kx
    k.start()
    k.ok("config", "set", "login.require_external_issuer", "true")
    agent = k.agent("github:pulls:read", consent=False)
    line = one_line_error(k.run("login", "--timeout", "10", tty=True), 14)
    assert "login.require_external_issuer" in line and "--issuer" in line
    denied = k.run("exec", "--agent", agent, "--", "true")
    assert denied.returncode == 122 and "login.require_external_issuer" in denied.stderr
    assert login(k, provider).returncode == 0
    k.approve(agent, "github:pulls:read")
    assert k.run("exec", "--agent", agent, "--", "true").returncode == 0
