"""The gateway: agents call GitHub through kontextd and never hold its secret.

A real fake GitHub (``tests/upstream``) stands behind the daemon's loopback
gateway; scripts run under ``kontext exec`` exactly as an agent would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Kontext, api_audit, api_new_agent, gateway_daemon
from tests.upstream.fake_github import API_KEY, FakeGitHub

UPSTREAM = Path(__file__).parent / "upstream"
READ_WRITE = ("github:pulls:read", "github:pulls:write")
STORY = ("credential.", "api.")  # the events of the four-line story


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(github: FakeGitHub) -> Iterator[Kontext]:
    """A daemon whose GitHub integration points at the fake, connected with its API key."""
    with gateway_daemon(github.url, API_KEY) as k:
        yield k


def run_script(k: Kontext, agent: str, script: str, *exec_args: str) -> dict:
    proc = k.run(
        "exec",
        "--agent",
        agent,
        "--target",
        "acme/backend",
        *exec_args,
        "--",
        sys.executable,
        str(UPSTREAM / script),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_an_httpx_script_reads_a_pr_and_posts_a_review_through_the_gateway(
    gw: Kontext, github: FakeGitHub
) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="pr-reviewer")
    out = run_script(gw, agent, "review_httpx.py")
    assert (out["pr_status"], out["title"], out["etag"]) == (200, "Add the gateway", '"abc123"')
    assert out["review_status"] == 200
    assert out["review"]["body"] == "LGTM"
    assert out["env"]["GITHUB_API_URL"] == f"{gw.base_url}/gw/github"
    assert out["env"]["GITHUB_TOKEN"] == out["env"]["KONTEXT_TOKEN"]


def test_an_out_of_scope_write_is_refused_and_audited(gw: Kontext, github: FakeGitHub) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="pr-reviewer")
    before = len(github.api_calls())
    out = run_script(gw, agent, "review_httpx.py")
    assert out["issue_status"] == 403
    assert "out of scope: needs github:issues:write" in out["issue_message"]
    paths = [s.path for s in github.api_calls()[before:]]
    assert "/repos/acme/backend/issues" not in paths
    denied = [e for e in api_audit(gw, agent) if e["event"] == "api.denied"]
    assert denied[-1]["path"] == "/repos/acme/backend/issues"
    assert denied[-1]["status"] == 403 and denied[-1]["method"] == "POST"


def test_a_client_in_the_style_of_actions_github_works_with_gh_token(
    gw: Kontext, github: FakeGitHub
) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="actions")
    out = run_script(gw, agent, "review_actions_style.py")
    assert (out["pr_status"], out["review_status"]) == (200, 200)
    assert out["review"]["body"] == "Ship it"
    assert out["env"]["GH_TOKEN"] == out["env"]["KONTEXT_TOKEN"]


def test_the_upstream_never_sees_a_kontext_token_and_the_child_never_the_secret(
    gw: Kontext, github: FakeGitHub
) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="pr-reviewer")
    before = len(github.seen)
    out = run_script(gw, agent, "review_httpx.py")
    token = out["env"]["KONTEXT_TOKEN"]
    seen = github.seen[before:]
    assert seen, "nothing reached the upstream"
    for request in seen:
        assert token not in request.path
        assert all(token not in v for v in request.headers.values())
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    # Everything the child had or received: its environment, every answer's headers and body.
    assert API_KEY not in json.dumps(out)
    # Nor is the secret in the daemon's log or audit.
    assert API_KEY not in gw.log_file.read_text()
    assert API_KEY not in json.dumps(api_audit(gw))


def test_the_audit_tells_the_story(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="pr-reviewer")
    run_script(gw, agent, "review_httpx.py")
    lines = gw.ok("audit", "tail", "--agent", agent, "-n", "20").stdout.splitlines()
    story = [line.split(None, 1)[1] for line in lines]
    story = [line for line in story if line.startswith(STORY)]
    assert story[0].startswith(f"credential.issued  agent:{agent} -> github")
    assert story[1].startswith(f"api.call           agent:{agent} GET /repos/acme/backend/pulls/42")
    assert story[2].startswith(
        f"api.call           agent:{agent} POST /repos/acme/backend/pulls/42/reviews"
    )
    assert story[-1].startswith(f"credential.revoked agent:{agent} -> github")
    call = next(e for e in api_audit(gw, agent) if e["event"] == "api.call")
    assert call["status"] == 200 and call["scope"] == "github:pulls:read"
    assert call["target"] == "acme/backend" and call["response_bytes"] > 0
    assert "duration_ms" in call and "body" not in json.dumps(call).lower()


def _hold(k: Kontext, agent: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc, env = k.token_for(agent, *args)
    return proc, env["KONTEXT_TOKEN"]


def test_revocation_reaches_the_gateway_at_once(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="revoked")
    proc, token = _hold(gw, agent)
    try:
        with gw.http() as http:
            auth = {"Authorization": f"Bearer {token}"}
            assert (
                http.get("/gw/github/repos/acme/backend/pulls/42", headers=auth).status_code == 200
            )
            gw.ok("revoke", f"agent:{agent}")
            refused = http.get("/gw/github/repos/acme/backend/pulls/42", headers=auth)
        assert refused.status_code == 403
        assert "credential revoked" in refused.json()["message"]
    finally:
        gw.close(proc)


def test_a_large_streamed_response_and_upload_pass_intact(gw: Kontext, github: FakeGitHub) -> None:
    import hashlib

    from tests.upstream.fake_github import big_body

    agent = api_new_agent(gw, "github:contents:read", "github:contents:write", prefix="big")
    proc, token = _hold(gw, agent)
    size = 24 * 1024 * 1024 + 123
    try:
        auth = {"Authorization": f"Bearer {token}"}
        with (
            gw.http() as http,
            http.stream(
                "GET", f"/gw/github/repos/acme/backend/contents/big?size={size}", headers=auth
            ) as answer,
        ):
            digest, total = hashlib.sha256(), 0
            for piece in answer.iter_raw():
                digest.update(piece)
                total += len(piece)
        assert answer.status_code == 200 and total == size
        assert digest.hexdigest() == hashlib.sha256(big_body(size)).hexdigest()
        upload = big_body(5 * 1024 * 1024)
        chunks = (upload[i : i + 100_000] for i in range(0, len(upload), 100_000))  # chunked
        with gw.http() as http:
            put = http.put(
                "/gw/github/repos/acme/backend/contents/a.bin", headers=auth, content=chunks
            )
        assert put.json() == {"size": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}
    finally:
        gw.close(proc)
    calls = [e for e in api_audit(gw, agent) if e["event"] == "api.call"]
    assert calls[0]["response_bytes"] == size
    assert calls[1]["request_bytes"] == len(upload)


@pytest.mark.parametrize(
    ("method", "path", "reason"),
    [
        ("DELETE", "/repos/acme/backend", "no route rule allows this call"),
        ("GET", "/user", "no route rule allows this call"),
        ("GET", "/repos/acme/other/pulls/1", "out of target: the credential is for acme/backend"),
        ("GET", "/repos/acme/backend/pulls/%2e%2e/%2e%2e/issues", "unsafe path"),
        ("GET", "/repos/acme/backend/issues/1", "out of scope: needs github:issues:read"),
    ],
)
def test_unknown_routes_other_targets_and_unsafe_paths_are_403(
    gw: Kontext, github: FakeGitHub, method: str, path: str, reason: str
) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="deny")
    proc, token = _hold(gw, agent, "--target", "acme/backend")
    before = len(github.api_calls())
    try:
        with gw.http() as http:
            answer = http.request(
                method, f"/gw/github{path}", headers={"Authorization": f"Bearer {token}"}
            )
    finally:
        gw.close(proc)
    assert answer.status_code == 403
    assert reason in answer.json()["message"]
    assert len(github.api_calls()) == before


def test_no_token_is_401_and_a_token_for_another_integration_is_403(gw: Kontext) -> None:
    with gw.http() as http:
        missing = http.get("/gw/github/repos/acme/backend/pulls/1")
        forged = http.get(
            "/gw/github/repos/acme/backend/pulls/1", headers={"Authorization": "Bearer e30.e30.x"}
        )
    assert missing.status_code == forged.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    agent = api_new_agent(gw, "slack:chat:write", prefix="slacker")
    proc, token = _hold(gw, agent)
    try:
        with gw.http() as http:
            answer = http.get(
                "/gw/github/repos/acme/backend/pulls/1",
                headers={"Authorization": f"Bearer {token}"},
            )
    finally:
        gw.close(proc)
    assert answer.status_code == 403 and "not for github (aud)" in answer.json()["message"]


def test_hop_by_hop_headers_stay_behind_and_status_and_headers_come_back(
    gw: Kontext, github: FakeGitHub
) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="hop")
    proc, token = _hold(gw, agent)
    try:
        with gw.http() as http:
            answer = http.get(
                "/gw/github/repos/acme/backend/pulls/9",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Connection": "keep-alive, X-Hop",
                    "X-Hop": "private",
                    "X-Echo": token,
                    "Accept": "application/vnd.github+json",
                },
            )
            del http.headers["Accept-Encoding"]
            missing = http.get(
                "/gw/github/repos/acme/backend/pulls/9/nope",
                headers={"Authorization": f"Bearer {token}"},
            )
    finally:
        gw.close(proc)
    assert answer.status_code == 200 and answer.json()["number"] == 9
    assert answer.headers["X-RateLimit-Remaining"] == "4999"
    assert missing.status_code == 404 and missing.json() == {"message": "Not Found"}
    sent = github.api_calls()[-2].headers
    assert "X-Hop" not in sent and "X-Echo" not in sent
    assert sent["Accept"] == "application/vnd.github+json"
    # Only what the caller sent: no Accept-Encoding of the forwarder's own.
    assert "Accept-Encoding" not in github.api_calls()[-1].headers


def test_a_browser_page_cannot_use_the_gateway(gw: Kontext) -> None:
    with gw.http() as http:
        rebinding = http.get("/gw/github/repos/a/b/pulls/1", headers={"Host": "evil.example"})
        cross = http.get("/gw/github/repos/a/b/pulls/1", headers={"Origin": "http://evil.example"})
    assert rebinding.status_code == 421
    assert cross.status_code == 403


def test_an_unconnected_integration_says_how_to_connect(fresh_kx: Kontext) -> None:
    fresh_kx.start()
    agent = api_new_agent(fresh_kx, "github:pulls:read")
    proc, token = _hold(fresh_kx, agent)
    try:
        with httpx.Client(base_url=fresh_kx.base_url) as http:
            answer = http.get(
                "/gw/github/repos/a/b/pulls/1", headers={"Authorization": f"Bearer {token}"}
            )
    finally:
        fresh_kx.close(proc)
    assert answer.status_code == 502
    assert "run 'kontext integration connect github'" in answer.json()["message"]


def test_head_and_redirects_stay_on_the_gateway(gw: Kontext, github: FakeGitHub) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="redirect")
    proc, token = _hold(gw, agent)
    try:
        with gw.http() as http:
            auth = {"Authorization": f"Bearer {token}"}
            head = http.head("/gw/github/repos/acme/backend/pulls/5", headers=auth)
            moved = http.get("/gw/github/repos/acme/backend/pulls/5/moved", headers=auth)
    finally:
        gw.close(proc)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) > 0
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"{gw.base_url}/gw/github/repos/acme/backend/pulls/5"


@pytest.mark.slow
def test_the_story_can_end_in_expiry_and_the_expired_token_is_refused(gw: Kontext) -> None:
    from tests.conftest import wait_until

    agent = api_new_agent(gw, *READ_WRITE, prefix="expiring")
    proc, token = _hold(gw, agent, "--ttl", "10s", "--target", "acme/backend")
    auth = {"Authorization": f"Bearer {token}"}
    try:
        with gw.http() as http:
            assert (
                http.get("/gw/github/repos/acme/backend/pulls/42", headers=auth).status_code == 200
            )
            assert wait_until(
                lambda: any(e["event"] == "credential.expired" for e in api_audit(gw, agent)),
                timeout=20,
                interval=0.5,
            )
            late = http.get("/gw/github/repos/acme/backend/pulls/42", headers=auth)
    finally:
        gw.close(proc)
    assert late.status_code == 401
    events = [e["event"] for e in api_audit(gw, agent) if e["event"].startswith(STORY)]
    assert events[:3] == ["credential.issued", "api.call", "credential.expired"], events


def test_a_token_narrowed_by_rfc_8693_exchange_works_only_within_its_scopes(gw: Kontext) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="narrow")
    proc, token = _hold(gw, agent)
    pull, reviews = (
        "/gw/github/repos/acme/backend/pulls/3",
        "/gw/github/repos/acme/backend/pulls/3/reviews",
    )
    try:
        with gw.http() as http:
            exchanged = http.post(
                "/token",
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "subject_token": token,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "scope": "github:pulls:read",
                },
            )
            assert exchanged.status_code == 200, exchanged.text
            auth = {"Authorization": f"Bearer {exchanged.json()['access_token']}"}
            assert http.get(pull, headers=auth).status_code == 200
            write = http.post(reviews, headers=auth, json={"body": "no"})
            assert write.status_code == 403 and "needs github:pulls:write" in write.text
    finally:
        gw.close(proc)
    with gw.http() as http:  # the exec ended: its narrowed token died with it
        assert http.get(pull, headers=auth).status_code == 403


def test_an_agent_cannot_redirect_the_upstream_secret_by_editing_the_config(
    github: FakeGitHub,
) -> None:
    """SECURITY.md, attacker 3: a broker-mode agent points github's base_url at its own
    loopback listener (config.toml), has the daemon reload it, and calls the gateway.
    The secret stays bound to the origin it was connected for; the reload and the
    refusal are audited; ``api.call`` names the upstream origin."""
    with gateway_daemon(github.url, API_KEY) as k:
        agent = api_new_agent(k, *READ_WRITE, prefix="thief")
        run_script(k, agent, "review_httpx.py")  # an honest call first: recorded with its host
        calls = [e for e in api_audit(k, agent) if e["event"] == "api.call"]
        assert calls and calls[0]["upstream"] == github.url  # http://127.0.0.1:PORT
        config = k.home / "config" / "config.toml"
        before = config.read_bytes() if config.exists() else None
        attack = ["--target", "acme/backend", "--", sys.executable]
        attack += [str(UPSTREAM / "steal_secret.py"), str(config), str(k.socket)]
        # Confined (the default where the kernel can), the config cannot even be written.
        confined = k.run("exec", "--agent", agent, *attack)
        if confined.returncode == 3:
            assert json.loads(confined.stdout)["config_error"] == "Read-only file system"
            assert (config.read_bytes() if config.exists() else None) == before
        # Unconfined, the edit lands and the daemon applies it: the binding still holds.
        proc = k.run("exec", "--agent", agent, "--no-confine", *attack)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["seen"] == []  # nothing reached the thief's listener, secret or not
        assert API_KEY not in proc.stdout
        assert out["status"] == 403
        assert "was connected for" in out["message"] and "base_url is now" in out["message"]
        assert "kontext integration connect github" in out["message"]
        events = api_audit(k, n=200)
        reloads = [e for e in events if e["event"] == "config.reloaded"]
        assert reloads and "integrations.github.base_url" in reloads[-1]["changed"]
        assert out["listener"] not in json.dumps(reloads)  # keys only, never values
        denied = [e for e in events if e["event"] == "api.denied" and e.get("agent")]
        assert "was connected for" in denied[-1]["reason"]
        listed = json.loads(k.ok("integration", "list", "--json").stdout)
        gh = next(i for i in listed if i["name"] == "github")
        assert gh["connected_for"] == github.url and "base_url is now" in gh["moved"]
