"""The embedded issuer's front door: metadata, pushed requests, /authorize and its pages."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

from conftest import Kontext
from oauth_flows import REDIRECT, client_secret, decide, metadata, page, pkce, push, query_of

S256 = {"code_challenge_method": "S256"}


def test_metadata_has_one_exact_issuer_everywhere(kx: Kontext) -> None:
    meta = metadata(kx)
    with kx.http() as http:
        assert http.get("/.well-known/oauth-authorization-server").json() == meta
    issuer = meta["issuer"]
    assert issuer == kx.base_url
    # MCP clients send their requests through the browser (the CLI's clients must
    # still push: test_a_request_not_pushed_by_this_user_is_refused_before_any_page).
    assert meta["require_pushed_authorization_requests"] is False
    assert meta["registration_endpoint"] == f"{issuer}/register"
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["pushed_authorization_request_endpoint"] == f"{issuer}/par"
    assert {"authorization_code", "refresh_token"} <= set(meta["grant_types_supported"])


def test_client_secret_is_private_to_this_user(kx: Kontext) -> None:
    path = kx.runtime / "oauth-client-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(kx.runtime.stat().st_mode) == 0o700
    assert path.stat().st_uid == os.getuid()
    if os.getuid() == 0 and shutil.which("setpriv"):
        # Another OS user cannot read it (CI runs as root: switch to nobody).
        other = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "cat", str(path)],
            capture_output=True,
            text=True,
        )
        assert other.returncode != 0 and other.stdout == ""


def test_a_request_not_pushed_by_this_user_is_refused_before_any_page(kx: Kontext) -> None:
    _, challenge = pkce()
    params = {"code_challenge": challenge, **S256, "scope": "openid"}
    no_secret = push(kx, "kontext", secret=None, **params)
    assert no_secret.status_code == 401
    assert no_secret.json()["error"] == "invalid_client"
    wrong = push(kx, "kontext", secret="not-the-secret", **params)
    assert wrong.status_code == 401
    # /authorize without a pushed request: an error page, never a redirect.
    with kx.http() as http:
        direct = http.get(
            "/authorize",
            params={
                "client_id": "kontext",
                "response_type": "code",
                "redirect_uri": REDIRECT.format(port=5555),
                "code_challenge": challenge,
                **S256,
            },
        )
    assert direct.status_code == 400
    assert "location" not in direct.headers
    assert "must be pushed" in direct.text
    assert 'name="csrf"' not in direct.text


def test_pkce_plain_or_missing_is_refused(kx: Kontext) -> None:
    verifier, challenge = pkce()
    plain = push(
        kx, "kontext", code_challenge=verifier, code_challenge_method="plain", scope="openid"
    )
    assert plain.status_code == 400 and "S256" in plain.json()["error_description"]
    missing = push(kx, "kontext", scope="openid")
    assert missing.status_code == 400
    no_method = push(kx, "kontext", code_challenge=challenge, scope="openid")
    assert no_method.status_code == 400


def test_unknown_client_and_bad_redirects_never_redirect(kx: Kontext) -> None:
    _, challenge = pkce()
    params = {"code_challenge": challenge, **S256, "scope": "openid"}
    unknown = push(kx, "agent:no-such-agent", **params)
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    for bad in (
        "https://evil.example/cb",
        "http://evil.example:8080/cb",
        "http://127.0.0.1/cb",  # no port
        "http://127.0.0.1:5555/cb#frag",
        "http://user@127.0.0.1:5555/cb",
    ):
        answer = push(kx, "kontext", redirect_uri=bad, **params)
        assert answer.status_code == 400, bad
    # A pushed request's redirect cannot be swapped at /authorize.
    pushed = push(kx, "kontext", **params).json()["request_uri"]
    with kx.http() as http:
        swapped = http.get(
            "/authorize",
            params={
                "client_id": "kontext",
                "request_uri": pushed,
                "redirect_uri": "http://127.0.0.1:6666/other",
            },
        )
    assert swapped.status_code == 400 and "location" not in swapped.headers
    wrong_client = page(kx, "agent:someone-else", pushed)
    assert wrong_client.status_code == 400 and "location" not in wrong_client.headers


def test_pages_forbid_framing_and_referrers_and_load_nothing_external(kx: Kontext) -> None:
    _, challenge = pkce()
    pushed = push(kx, "kontext", code_challenge=challenge, **S256, scope="openid").json()
    answer = page(kx, "kontext", pushed["request_uri"])
    assert answer.status_code == 200
    headers = answer.headers
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert "<script" not in answer.text and "http://" not in answer.text.split("<body>")[1]
    assert 'name="csrf"' in answer.text


def test_foreign_host_and_cross_origin_posts_are_refused(kx: Kontext) -> None:
    with kx.http() as http:
        rebinding = http.get("/authorize", headers={"Host": f"evil.example:{kx.port}"})
        assert rebinding.status_code == 421
        cross = http.post("/authorize", data={"x": "1"}, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403
        # Origin "null" (our no-referrer pages' own forms) only with Sec-Fetch-Site same-origin.
        for headers in ({"Origin": "null"}, {"Origin": "null", "Sec-Fetch-Site": "cross-site"}):
            assert http.post("/authorize", data={"x": "1"}, headers=headers).status_code == 403
        assert (
            http.post(
                "/introspect",
                data={"token": "x"},
                headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
            ).status_code
            == 403
        )


def test_a_wrong_csrf_token_approves_nothing(kx: Kontext) -> None:
    _, challenge = pkce()
    uri = push(kx, "kontext", code_challenge=challenge, **S256, scope="openid").json()[
        "request_uri"
    ]
    with kx.http() as http:
        forged = http.post(
            "/authorize",
            data={"request_uri": uri, "csrf": "guessed", "decision": "approve"},
        )
    assert forged.status_code == 400 and "location" not in forged.headers
    # The real form still works afterwards, once.
    real = decide(kx, "kontext", uri)
    assert real.status_code == 303
    again = decide_again(kx, uri)
    assert again.status_code == 400


def decide_again(kx: Kontext, uri: str) -> object:
    with kx.http() as http:
        return http.post(
            "/authorize", data={"request_uri": uri, "csrf": "x", "decision": "approve"}
        )


def test_approval_and_denial_return_state_and_iss(kx: Kontext) -> None:
    _, challenge = pkce()
    for decision in ("approve", "deny"):
        pushed = push(kx, "kontext", code_challenge=challenge, **S256, scope="openid", state="s-42")
        answer = decide(kx, "kontext", pushed.json()["request_uri"], decision)
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.startswith(REDIRECT.format(port=55555))
        query = query_of(location)
        assert query["state"] == "s-42"
        assert query["iss"] == kx.base_url  # RFC 9207
        if decision == "approve":
            assert len(query["code"]) >= 40
        else:
            assert query["error"] == "access_denied" and "code" not in query
    assert client_secret(kx) not in kx.log_file.read_text()


def test_consent_page_says_who_asks_for_what_in_plain_words(kx: Kontext) -> None:
    agent = kx.agent(
        "github:pulls:read",
        "github:pulls:write",
        extra=("--display-name", "PR Reviewer"),
        consent=False,
    )
    _, challenge = pkce()
    pushed = push(
        kx,
        f"agent:{agent}",
        code_challenge=challenge,
        **S256,
        scope="github:pulls:read github:pulls:write",
        resource="github",
        target="acme-corp/backend",
    )
    assert pushed.status_code == 201, pushed.text
    html = page(kx, f"agent:{agent}", pushed.json()["request_uri"]).text
    assert "<h1>PR Reviewer is requesting access:</h1>" in html
    assert "<li>Read pull requests</li>" in html
    assert "<li>Post review comments and update pull requests</li>" in html
    assert "<li>No org admin access</li>" in html and "No access to: Read issues" in html
    assert "acme-corp/backend" in html and "<p>Expires in 1 hour</p>" in html
    # Scopes beyond the agent's permissions cannot even be asked for.
    wider = push(
        kx, f"agent:{agent}", code_challenge=challenge, **S256, scope="github:issues:write"
    )
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
