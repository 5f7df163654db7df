"""A web page in the user's browser attacks every loopback route.

DNS rebinding (the page's own name as ``Host``) gets 421 and no data on every
route; a cross-site POST (a foreign ``Origin``) gets 403 and changes nothing;
every HTML page forbids framing; brute-forcing codes, secrets and request URIs
is throttled (429 with ``Retry-After``), and a page's guessing (in real Chromium)
throttles only the page.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
import urllib.parse

import pytest

from tests.conftest import Kontext, api_audit, api_new_agent, wait_until
from tests.security.test_loopback_attacks import _push_login

# Every route the loopback port serves (kontextd.api.loopback + oauth.routes + the gateway
# + the dashboard).
ROUTES = [
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/jwks.json"),
    ("POST", "/introspect"),
    ("POST", "/par"),
    ("GET", "/authorize"),
    ("POST", "/authorize"),
    ("POST", "/token"),
    ("POST", "/revoke"),
    ("POST", "/register"),
    ("GET", "/.well-known/oauth-protected-resource"),
    ("GET", "/.well-known/oauth-protected-resource/gw/github"),
    ("GET", "/gw/github/repos/a/b/pulls/1"),
    ("POST", "/gw/github/repos/a/b/pulls/1/reviews"),
    ("DELETE", "/gw/github/repos/a/b/issues/1"),
    # The dashboard (kontextd.dashboard.routes).
    ("GET", "/dashboard/open"),
    ("GET", "/dashboard/"),
    ("GET", "/dashboard/api/overview"),
    ("GET", "/dashboard/api/events"),
    ("POST", "/dashboard/api/revoke-agent"),
    ("POST", "/dashboard/api/sign-out"),
]
REBINDING_HOSTS = ["evil.example:{port}", "127.0.0.1.evil.example:{port}", "localhost.:{port}"]
FOREIGN_ORIGINS = ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1:{port}"]
# What a browser-based MCP client served from a loopback origin posts to (RFC 7591
# registration, /token, /revoke): pages on another loopback port may, nothing else.
MCP_CLIENT_ROUTES = {"/register", "/token", "/revoke"}
LOOPBACK_ORIGIN = "http://127.0.0.1:1"


@pytest.mark.parametrize("host", REBINDING_HOSTS)
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_dns_rebinding_gets_421_on_every_route(
    kx: Kontext, method: str, path: str, host: str
) -> None:
    with kx.http() as http:
        answer = http.request(
            method, path, headers={"Host": host.format(port=kx.port)}, data={"token": "x"}
        )
    assert answer.status_code == 421, (method, path, answer.text)
    assert answer.json()["error"]["code"] == "misdirected"
    assert "keys" not in answer.text and "issuer" not in answer.text


@pytest.mark.parametrize(
    ("method", "path", "origin"),
    [
        (method, path, origin)
        for method, path in ROUTES
        for origin in FOREIGN_ORIGINS
        # a loopback page may post there: test_loopback_pages_may_use_the_mcp_routes
        if method != "GET" and not (path in MCP_CLIENT_ROUTES and origin == LOOPBACK_ORIGIN)
    ],
)
def test_cross_site_posts_get_403_on_every_route(
    kx: Kontext, method: str, path: str, origin: str
) -> None:
    with kx.http() as http:
        answer = http.request(
            method,
            path,
            headers={"Origin": origin.format(port=kx.port), "Sec-Fetch-Site": "cross-site"},
            data={"token": "x"},
        )
    assert answer.status_code == 403, (method, path, answer.text)


@pytest.mark.parametrize("path", sorted(MCP_CLIENT_ROUTES))
def test_loopback_pages_may_use_the_mcp_routes(kx: Kontext, path: str) -> None:
    """A browser-based MCP client served from a loopback origin (e.g. the MCP
    Inspector on localhost:6274) gets CORS answers — never a cookie-reading page."""
    with kx.http() as http:
        preflight = http.options(
            path,
            headers={"Origin": LOOPBACK_ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        answer = http.post(
            path, headers={"Origin": LOOPBACK_ORIGIN, "Sec-Fetch-Site": "cross-site"}, data={}
        )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert answer.status_code in (200, 400, 401), answer.text  # the endpoint's own answer
    assert answer.headers["access-control-allow-origin"] == "*"


def test_refusals_are_audited_without_flooding_the_log(fresh_kx: Kontext) -> None:
    fresh_kx.start()
    with fresh_kx.http() as http:
        for _ in range(5):
            http.get("/jwks.json", headers={"Host": f"evil.example:{fresh_kx.port}"})
            http.post("/token", data={"x": "1"}, headers={"Origin": "http://evil.example"})
    refused = [e for e in api_audit(fresh_kx) if e["event"] == "http.refused"]
    assert sorted((e["reason"], e["path"]) for e in refused) == [
        ("Host is not our loopback address (DNS rebinding?)", "/jwks.json"),
        ("cross-origin request refused", "/token"),
    ]
    assert all(e["not_recorded_since_last"] == 0 for e in refused)
    assert "evil.example" not in json.dumps(refused)  # nothing the page chose but the path


def test_a_cross_site_revoke_or_introspect_changes_and_reveals_nothing(kx: Kontext) -> None:
    agent = api_new_agent(kx, "github:pulls:read", prefix="xsite")
    proc, env = kx.token_for(agent)
    try:
        token = env["KONTEXT_TOKEN"]
        with kx.http() as http:
            evil = {"Origin": "http://evil.example"}
            revoked = http.post("/revoke", data={"token": token}, headers=evil)
            peek = http.post("/introspect", data={"token": token}, headers=evil)
        assert revoked.status_code == peek.status_code == 403
        assert "act" not in peek.text and agent not in peek.text
        assert kx.introspect(token)["active"] is True
    finally:
        kx.close(proc)


def test_every_html_page_forbids_framing(kx: Kontext) -> None:
    agent = api_new_agent(kx, "github:pulls:read", prefix="frame", consent=False)
    secret = (kx.runtime / "oauth-client-secret").read_text().strip()
    with kx.http() as http:
        pushed = http.post(
            "/par",
            auth=(urllib.parse.quote(f"agent:{agent}", safe=""), secret),
            data={
                "response_type": "code",
                "redirect_uri": "http://127.0.0.1:9/cb",
                "scope": "github:pulls:read",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "code_challenge_method": "S256",
            },
        ).json()
        consent = http.get(
            "/authorize",
            params={"client_id": f"agent:{agent}", "request_uri": pushed["request_uri"]},
        )
        error_page = http.get("/authorize", params={"client_id": "x", "request_uri": "nope"})
        bad_post = http.post("/authorize", data={"request_uri": "nope", "csrf": "x"})
    assert consent.status_code == 200 and "Approve" in consent.text
    for page in (consent, error_page, bad_post):
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"


# -- brute force ---------------------------------------------------------------------


def _wrong_code(k: Kontext, secret: str) -> int:
    with k.http() as http:
        return http.post(
            "/token",
            auth=("kontext", secret),
            data={
                "grant_type": "authorization_code",
                "code": "guess-" + "A" * 40,
                "code_verifier": "v" * 43,
                "redirect_uri": "http://127.0.0.1:9/cb",
            },
        ).status_code


def test_guessing_codes_and_secrets_is_throttled_then_recovers(fresh_kx: Kontext) -> None:
    fresh_kx.start()
    secret = (fresh_kx.runtime / "oauth-client-secret").read_text().strip()
    statuses = [_wrong_code(fresh_kx, secret) for _ in range(20)]
    assert set(statuses) == {400}
    with fresh_kx.http() as http:
        throttled = http.post(
            "/token", auth=("kontext", "wrong-secret"), data={"grant_type": "refresh_token"}
        )
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "temporarily_unavailable"
    assert 1 <= int(throttled.headers["retry-after"]) <= 10
    # Once the window has passed, codes are checked again and a real consent goes through.
    assert wait_until(lambda: _wrong_code(fresh_kx, secret) == 400, timeout=15, interval=0.5)
    api_new_agent(fresh_kx, "github:pulls:read", prefix="after-throttle")


def test_guessing_request_uris_on_the_consent_page_is_throttled(fresh_kx: Kontext) -> None:
    fresh_kx.start()
    with fresh_kx.http() as http:
        answers = [
            http.get(
                "/authorize",
                params={"client_id": "kontext", "request_uri": f"urn:guess:{n}"},
            )
            for n in range(21)
        ]
        csrf = http.post("/authorize", data={"request_uri": "urn:guess", "csrf": "guess"})
    assert [a.status_code for a in answers[:20]] == [400] * 20
    assert answers[20].status_code == 429 and csrf.status_code == 429
    assert re.search(r"retry in \d+ s", answers[20].text)
    assert answers[20].headers["x-frame-options"] == "DENY"


CHROMIUM = "/usr/bin/chromium"
GUESSING_PAGE = """<html><body><script>
const issuer = "ISSUER";
async function guess() {
  for (let n = 0; n < 30; n++) {
    const form = new URLSearchParams({grant_type: "authorization_code", code: "guess" + n,
      client_id: "kontext", client_secret: "guess", redirect_uri: "http://127.0.0.1:9/cb",
      code_verifier: "v".repeat(43)});
    try { await fetch(issuer + "/token", {method: "POST", body: form}); } catch (e) {}
    try { await fetch(issuer + "/authorize?client_id=kontext&request_uri=urn:guess:" + n,
      {mode: "no-cors"}); } catch (e) {}
  }
  document.title = "done";
}
guess();
</script></body></html>"""


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_a_web_pages_guessing_never_locks_the_user_out(fresh_kx: Kontext) -> None:
    """Issue 17 item 11: a page in the user's own browser — served from another
    127.0.0.1 port, which may use /token (CORS for loopback MCP clients) — guesses
    codes at /token and request URIs at /authorize 30 times each. Its failures fill
    a bucket of its own (Sec-Fetch-Site): the user's CLI and consent page go on."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    k = fresh_kx
    k.start()
    html = GUESSING_PAGE.replace("ISSUER", k.base_url).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as play:
            browser = play.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
                page.wait_for_function("document.title === 'done'", timeout=60_000)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    locked = [e for e in api_audit(k, n=500) if e["event"] == "oauth.throttled"]
    assert locked and {e["caller"] for e in locked} == {f"uid:{os.getuid()}/web"}, locked
    secret = (k.runtime / "oauth-client-secret").read_text().strip()
    assert _wrong_code(k, secret) == 400  # the user's own CLI: checked, not throttled
    uri = _push_login(k)  # the user's own login, as the CLI pushes it
    with k.http() as http_client:
        mine = http_client.get("/authorize", params={"client_id": "kontext", "request_uri": uri})
    assert mine.status_code == 200 and 'name="csrf"' in mine.text
