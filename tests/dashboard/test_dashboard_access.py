"""Who gets into the dashboard, attacked over plain HTTP from where each attacker stands.

Only a one-time link from ``kontext dashboard`` opens a session, once; the session
is an HttpOnly, SameSite=Strict cookie scoped to /dashboard; every POST needs the
CSRF token; cross-site requests, other pages' subresources and other OS users get
nothing; every answer forbids framing and caching; and nothing served ever holds
a token or an upstream secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Kontext, api_audit, api_new_agent, wait_until
from tests.dashboard.harness import link, open_session

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
API = [
    "/dashboard/api/overview",
    "/dashboard/api/credentials",
    "/dashboard/api/grants",
    "/dashboard/api/integrations",
    "/dashboard/api/policy",
    "/dashboard/api/filters",
    "/dashboard/api/verify",
]
PAGES = ["/dashboard/", "/dashboard/credentials", "/dashboard/grants", "/dashboard/activity"]


def test_the_link_opens_one_session_once_with_a_strict_cookie(kx: Kontext) -> None:
    url = link(kx)
    with kx.http() as http:
        first = http.get(url.removeprefix(kx.base_url))
        second = http.get(url.removeprefix(kx.base_url))
    assert first.status_code == 303 and first.headers["location"] == "/dashboard/"
    cookie = first.headers["set-cookie"]
    name = cookie.split("=", 1)[0]
    assert name == f"kontext_dashboard_{kx.port}"
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "SameSite=Strict" in cookie and "Path=/dashboard;" in cookie
    assert second.status_code == 403
    assert "already used" in second.text and "kontext dashboard" in second.text
    assert "set-cookie" not in second.headers
    opened = [e for e in api_audit(kx, n=50) if e["event"] == "dashboard.opened"]
    assert opened and opened[-1]["via"] == "dashboard"


def test_without_a_session_pages_say_how_to_get_in_and_the_api_answers_401(kx: Kontext) -> None:
    forged = {"Cookie": f"kontext_dashboard_{kx.port}=made-up-session-value-0123456789"}
    with kx.http() as http:
        for headers in ({}, forged):
            page = http.get("/dashboard/", headers=headers)
            assert page.status_code == 401 and "Run 'kontext dashboard'" in page.text
            assert "kontext-csrf" not in page.text
            for path in API:
                assert http.get(path, headers=headers).status_code == 401, path
        made_up = http.get("/dashboard/open", params={"t": "guessed-link-0123456789abcdef"})
    assert made_up.status_code == 403


def test_every_answer_forbids_framing_caching_and_other_origins(kx: Kontext) -> None:
    session = open_session(kx)
    answers = [session.get(p) for p in PAGES + API]
    answers += [session.get("/dashboard/static/dashboard.js", **{"Sec-Fetch-Site": "same-origin"})]
    with kx.http() as http:
        answers.append(http.get("/dashboard/"))  # no session
    for answer in answers:
        headers = answer.headers
        assert answer.status_code in (200, 401), answer.url
        assert headers["cache-control"] == "no-store"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cross-origin-resource-policy"] == "same-origin"
        csp = headers["content-security-policy"]
        for rule in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
            assert rule in csp
        assert "unsafe-inline" not in csp and "http" not in csp


def test_posts_need_the_csrf_token_and_change_nothing_without_it(kx: Kontext) -> None:
    agent = api_new_agent(kx, "github:pulls:read", prefix="csrf")
    session = open_session(kx)
    body = {"agent": f"agent:{agent}", "kill": False}
    refused = [
        session.post("/dashboard/api/revoke-agent", body, **{"X-Kontext-CSRF": "wrong"}),
        session.post("/dashboard/api/revoke-agent", body, **{"X-Kontext-CSRF": ""}),
        session.post("/dashboard/api/revoke-agent", body, Origin="http://evil.example"),
        session.post("/dashboard/api/revoke-agent", body, Origin=f"http://127.0.0.1:{kx.port + 1}"),
        session.post("/dashboard/api/revoke-agent", body, **{"Sec-Fetch-Site": "same-site"}),
        session.post("/dashboard/api/revoke-agent", body, **{"Sec-Fetch-Site": "cross-site"}),
    ]
    with kx.http() as http:  # a form post: no JSON, no CSRF header
        refused.append(
            http.post(
                "/dashboard/api/revoke-agent",
                data={"agent": f"agent:{agent}"},
                headers={"Cookie": session.cookie},
            )
        )
    assert [r.status_code for r in refused] == [403] * 7
    assert not any(e["event"] == "agent.revoked" for e in api_audit(kx, agent))
    done = session.post("/dashboard/api/revoke-agent", body, Origin=kx.base_url)
    assert done.status_code == 200, done.text
    assert done.json()["message"].startswith(f"Revoked agent:{agent}: 0 live credentials ended")
    revoked = [e for e in api_audit(kx, agent) if e["event"] == "agent.revoked"]
    assert len(revoked) == 1 and revoked[0]["via"] == "dashboard"


def test_other_pages_cannot_load_the_api_as_a_subresource(kx: Kontext) -> None:
    session = open_session(kx)
    for dest in ("script", "image", "style", "iframe"):
        answer = session.get(
            "/dashboard/api/overview", **{"Sec-Fetch-Dest": dest, "Sec-Fetch-Site": "same-origin"}
        )
        assert answer.status_code == 403, dest
    for site in ("same-site", "cross-site"):
        assert session.get("/dashboard/api/overview", **{"Sec-Fetch-Site": site}).status_code == 403
        assert session.get("/dashboard/", **{"Sec-Fetch-Site": site}).status_code == 403
        assert session.get("/dashboard/api/events", **{"Sec-Fetch-Site": site}).status_code == 403


def test_signing_out_ends_the_session(kx: Kontext) -> None:
    session = open_session(kx)
    out = session.post("/dashboard/api/sign-out", {})
    assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
    assert session.get("/dashboard/api/overview").status_code == 401
    closed = [e for e in api_audit(kx, n=50) if e["event"] == "dashboard.closed"]
    assert closed and closed[-1]["via"] == "dashboard"


# -- another OS user ------------------------------------------------------------------

STRANGER = """
import sys, urllib.request, urllib.error
port, path, cookie = sys.argv[1], sys.argv[2], sys.argv[3]
request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Cookie": cookie})
try:
    with urllib.request.urlopen(request, timeout=30) as answer:
        print(answer.status, answer.read().decode()[:300])
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode()[:300])
"""


def as_nobody(*args: str) -> str:
    if os.getuid() != 0:
        pytest.skip("switching to another uid needs root (setpriv)")
    proc = subprocess.run(
        [*AS_NOBODY, sys.executable, "-I", "-c", STRANGER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_another_uid_gets_nothing_with_the_link_or_the_cookie(kx: Kontext) -> None:
    url = link(kx)
    path = url.removeprefix(kx.base_url)
    stolen_link = as_nobody(str(kx.port), path, "")
    assert stolen_link.startswith("403 ") and "another OS user" in stolen_link
    with kx.http() as http:  # the link was not spent by the stranger's try
        assert http.get(path).status_code == 303
    session = open_session(kx)
    for target in ("/dashboard/", "/dashboard/api/credentials", "/dashboard/api/events"):
        stolen = as_nobody(str(kx.port), target, session.cookie)
        assert stolen.startswith("403 "), (target, stolen)
        assert "kontext-csrf" not in stolen and "agents" not in stolen
    assert session.get("/dashboard/api/overview").status_code == 200  # still the user's


# -- the CLI ---------------------------------------------------------------------------


def test_kontext_dashboard_opens_the_link_with_browser(kx: Kontext, tmp_path: Path) -> None:
    seen = tmp_path / "argv"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{seen}"\n')
    browser.chmod(0o700)
    done = kx.ok("dashboard", env={"BROWSER": str(browser)})
    assert done.stdout == ""
    assert "opened the kontext dashboard" in done.stderr
    assert wait_until(seen.exists, timeout=10)
    url = seen.read_text()
    with kx.http() as http:
        assert http.get(url.removeprefix(kx.base_url)).status_code == 303


def test_no_secret_in_any_page_answer_or_stream(kx: Kontext) -> None:
    """While an agent holds a token, nothing the dashboard serves contains it."""
    agent = api_new_agent(kx, "github:pulls:read", prefix="nosecret")
    proc, env = kx.token_for(agent)
    try:
        session = open_session(kx)
        seen = [session.get(p).text for p in PAGES + API]
        with (
            kx.http() as http,
            http.stream(
                "GET", "/dashboard/api/events?history=1000", headers=session.headers()
            ) as events,
        ):
            body = b""
            for chunk in events.iter_bytes():
                body += chunk
                if b"event: ready" in body:
                    break
        seen.append(body.decode())
    finally:
        kx.close(proc)
    everything = "\n".join(seen)
    assert env["KONTEXT_TOKEN"] not in everything
    assert env["KONTEXT_TOKEN"].split(".")[2] not in everything  # not even the signature
    assert (kx.runtime / "oauth-client-secret").read_text().strip() not in everything
    assert json.loads(seen[len(PAGES) + 1])["credentials"]  # listed, by jti only


def test_an_exchanged_credential_shows_its_parent(kx: Kontext) -> None:
    """Credential unification: a token narrowed by RFC 8693 exchange is a credential of
    its own, listed with the exec credential it came from."""
    agent = api_new_agent(kx, "github:pulls:read", "github:pulls:write", prefix="parent")
    proc, env = kx.token_for(agent)
    try:
        with kx.http() as http:
            narrowed = http.post(
                "/token",
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "subject_token": env["KONTEXT_TOKEN"],
                    "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "scope": "github:pulls:read",
                },
            )
        assert narrowed.status_code == 200, narrowed.text
        listed = open_session(kx).get("/dashboard/api/credentials").json()["credentials"]
    finally:
        kx.close(proc)
    mine = {c["jti"]: c for c in listed if c["agent"] == f"agent:{agent}"}
    parent = mine[env["KONTEXT_CREDENTIAL_ID"]]
    (child,) = [c for c in mine.values() if c["parent"] == parent["jti"]]
    assert child["kind"] == "exchange" and parent["kind"] == "exec"
    assert [s["scope"] for s in child["scopes"]] == ["github:pulls:read"]
    assert narrowed.json()["access_token"] not in json.dumps(listed)
