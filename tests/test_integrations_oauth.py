"""Connecting an integration with OAuth (code + PKCE), refresh, and token delivery.

The provider is the fake GitHub's OAuth endpoints; the test plays the browser:
it opens the authorization URL ``kontext integration connect`` prints and follows
the provider's redirect to the CLI's loopback listener.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Kontext, api_audit, api_new_agent, short_home
from tests.upstream.fake_github import CLIENT_ID, FakeGitHub

STALE_AFTER = 1.5  # the fake's tokens live 31 s; the daemon refreshes 30 s before expiry


def oauth_table(name: str, url: str) -> str:
    return (
        f"[integrations.{name}.oauth]\n"
        f'authorize_url = "{url}/login/oauth/authorize"\n'
        f'token_url = "{url}/login/oauth/access_token"\n'
        f'client_id = "{CLIENT_ID}"\nscopes = ["repo"]\n'
    )


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def ox(provider: FakeGitHub) -> Iterator[Kontext]:
    k = Kontext(short_home())
    (k.home / "config").mkdir(mode=0o700)
    (k.home / "config" / "config.toml").write_text(
        f'[integrations.github]\nbase_url = "{provider.url}"\ncredential = "oauth"\n'
        + oauth_table("github", provider.url)
        + '[integrations.forge]\nenv = ["FORGE_TOKEN"]\nscopes = { "repo:read" = "Read code" }\n'
        'credential = "oauth"\ndelivery = "token"\n' + oauth_table("forge", provider.url)
    )
    k.start()
    yield k
    k.stop()


def connect_like_a_browser(k: Kontext, name: str) -> subprocess.CompletedProcess[str]:
    """Run ``integration connect NAME --no-browser`` and do the browser's part."""
    proc = k.popen("integration", "connect", name, "--no-browser")
    assert proc.stderr is not None
    url = ""
    while not url.startswith("http"):
        line = proc.stderr.readline()
        assert line, "connect printed no authorization URL"
        url = line.strip()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and "code_verifier" not in query
    page = httpx.get(url, follow_redirects=True, timeout=10)  # provider → 302 → our listener
    assert page.status_code == 200 and "close this tab" in page.text
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def gateway_get(k: Kontext, agent: str) -> httpx.Response:
    proc, env = k.token_for(agent)
    try:
        with k.http() as http:
            return http.get(
                "/gw/github/repos/acme/backend/pulls/1",
                headers={"Authorization": f"Bearer {env['KONTEXT_TOKEN']}"},
            )
    finally:
        k.close(proc)


def upstream_auth(provider: FakeGitHub) -> str:
    return provider.api_calls()[-1].headers["Authorization"]


def test_connect_with_oauth_then_agents_call_with_the_providers_token(
    ox: Kontext, provider: FakeGitHub
) -> None:
    provider.oauth.access_expires_in = 3600
    done = connect_like_a_browser(ox, "github")
    assert done.returncode == 0, done.stderr
    assert "connected github with OAuth" in done.stderr
    rows = json.loads(ox.ok("integration", "list", "--json").stdout)
    github = next(r for r in rows if r["name"] == "github")
    assert github["connected"] and github["method"] == "oauth"
    agent = api_new_agent(ox, "github:pulls:read")
    assert gateway_get(ox, agent).status_code == 200
    token = upstream_auth(provider).removeprefix("Bearer ")
    assert token.startswith("gho_") and token in provider.valid_tokens
    everything = json.dumps(api_audit(ox)) + ox.log_file.read_text() + done.stderr
    assert token not in everything
    assert not any(rt in everything for rt in provider.oauth.refresh_tokens)


def test_the_daemon_refreshes_an_expiring_access_token(ox: Kontext, provider: FakeGitHub) -> None:
    provider.oauth.access_expires_in = 31
    assert connect_like_a_browser(ox, "github").returncode == 0
    agent = api_new_agent(ox, "github:pulls:read")
    assert gateway_get(ox, agent).status_code == 200
    first = upstream_auth(provider)
    grants_before = len(provider.oauth.grants)
    time.sleep(STALE_AFTER)
    assert gateway_get(ox, agent).status_code == 200
    assert provider.oauth.grants[grants_before:] == ["refresh_token"]
    assert upstream_auth(provider) != first
    assert any(e["event"] == "integration.refreshed" for e in api_audit(ox, n=20))


def test_a_refused_refresh_ends_the_connection_with_a_clear_message(
    ox: Kontext, provider: FakeGitHub
) -> None:
    provider.oauth.access_expires_in = 31
    provider.oauth.refuse_refresh = False
    assert connect_like_a_browser(ox, "github").returncode == 0
    provider.oauth.refuse_refresh = True
    try:
        time.sleep(STALE_AFTER)
        answer = gateway_get(ox, api_new_agent(ox, "github:pulls:read"))
    finally:
        provider.oauth.refuse_refresh = False
    assert answer.status_code == 502
    assert answer.json()["message"] == (
        "kontext: github is no longer connected: the provider refused to refresh it "
        "(invalid_grant): run 'kontext integration connect github'"
    )
    rows = json.loads(ox.ok("integration", "list", "--json").stdout)
    assert not next(r for r in rows if r["name"] == "github")["connected"]
    ended = [e for e in api_audit(ox, n=20) if e["event"] == "integration.disconnected"]
    assert "refused to refresh" in ended[-1]["reason"]


def test_token_delivery_hands_the_child_the_providers_short_lived_token(
    ox: Kontext, provider: FakeGitHub
) -> None:
    provider.oauth.access_expires_in = 3600
    assert connect_like_a_browser(ox, "forge").returncode == 0
    agent = api_new_agent(ox, "forge:repo:read")
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    env = json.loads(ox.ok("exec", "--agent", agent, "--", sys.executable, "-c", script).stdout)
    assert env["FORGE_TOKEN"] in provider.valid_tokens
    assert env["FORGE_TOKEN"] != env["KONTEXT_TOKEN"]
    issued = next(e for e in api_audit(ox, agent) if e["event"] == "credential.issued")
    assert issued["delivery"] == {"forge": "token"}
    assert env["FORGE_TOKEN"] not in json.dumps(api_audit(ox))


def test_token_delivery_for_an_unconnected_integration_fails_before_the_command(
    fresh_kx: Kontext, provider: FakeGitHub
) -> None:
    (fresh_kx.home / "config").mkdir(mode=0o700)
    (fresh_kx.home / "config" / "config.toml").write_text(
        '[integrations.forge]\nenv = ["FORGE_TOKEN"]\nscopes = { "repo:read" = "Read code" }\n'
        'credential = "oauth"\ndelivery = "token"\n' + oauth_table("forge", provider.url)
    )
    fresh_kx.start()
    agent = api_new_agent(fresh_kx, "forge:repo:read")
    proc = fresh_kx.run("exec", "--agent", agent, "--", "true")
    assert proc.returncode == 125
    assert "forge is not connected: run 'kontext integration connect forge'" in proc.stderr


def test_a_forged_state_or_a_refusal_at_the_provider_changes_nothing(ox: Kontext) -> None:
    with ox.control() as api:
        start = api.post(
            "/v1/integrations/forge/oauth/start", json={"redirect_uri": "http://127.0.0.1:9/cb"}
        ).json()
        state = urllib.parse.parse_qs(urllib.parse.urlsplit(start["authorize_url"]).query)["state"][
            0
        ]
        forged = api.post("/v1/integrations/forge/oauth/finish", json={"state": "x", "code": "c"})
        denied = api.post(
            "/v1/integrations/forge/oauth/finish", json={"state": state, "error": "access_denied"}
        )
        evil = api.post(
            "/v1/integrations/forge/oauth/start", json={"redirect_uri": "https://evil.example/cb"}
        )
    assert forged.status_code == 400 and "state mismatch" in forged.json()["error"]["message"]
    assert denied.status_code == 502 and "access_denied" in denied.json()["error"]["message"]
    assert evil.status_code == 400


def test_the_redirect_listener_answers_only_its_path_and_only_once() -> None:
    from kontext_cli.login.callback import ProviderRedirect

    with ProviderRedirect() as listener:
        base = listener.redirect_uri.rsplit("/callback/", 1)[0]
        assert httpx.get(f"{base}/callback/guess?code=x&state=y").status_code == 404
        assert httpx.get(f"{listener.redirect_uri}?code=c1&state=s1").status_code == 200
        assert httpx.get(f"{listener.redirect_uri}?code=c2&state=s2").status_code == 400
        assert listener.wait(1) == {"code": "c1", "state": "s1"}
