"""A web page in the user's Chromium tries to register an MCP client and get it
authorized without the user.

The page is served for real on another 127.0.0.1 port: the worst case, since a
loopback origin *may* register (browser-based MCP clients are served from
one) and is the same site as kontext. It registers a client whose redirect is
its own server, then tries every way to get a code without a click: fetch, a
frame, an image, a popup, a form posting Approve with guessed fields, and
``/token`` with a made-up code. Nothing is approved, no code reaches it, and
nothing is granted or minted.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from conftest import Kontext, api_audit

pytest.importorskip("playwright")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (.ci/run installs it)"
)

ATTACK = """<!doctype html><html><body><script>
const as = "{issuer}";
const results = {{}};
async function attempt(name, fn) {{
  try {{ results[name] = await fn(); }} catch (e) {{ results[name] = "blocked: " + e.name; }}
}}
function authorizeUrl(clientId) {{
  const q = new URLSearchParams({{response_type: "code", client_id: clientId,
    redirect_uri: location.origin + "/callback", state: "s", code_challenge: "A".repeat(43),
    code_challenge_method: "S256", scope: "github:pulls:read",
    resource: "http://127.0.0.1:8765/mcp"}});
  return as + "/authorize?" + q;
}}
function load(tag, url) {{
  return new Promise((resolve) => {{
    const el = document.createElement(tag);
    el.src = url;
    el.onload = () => resolve("loaded");
    el.onerror = () => resolve("blocked: error");
    document.body.append(el);
    setTimeout(() => resolve("no answer"), 3000);
  }});
}}
window.attack = (async () => {{
  const reg = await fetch(as + "/register", {{method: "POST",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{client_name: "Claude Desktop",
      redirect_uris: [location.origin + "/callback"]}})}});
  const client = await reg.json();
  results.registered = reg.status;
  results.client_id = client.client_id;
  const url = authorizeUrl(client.client_id);
  await attempt("read_page", async () => (await (await fetch(url)).text()).includes("csrf"));
  await attempt("frame", () => load("iframe", url));
  await attempt("image", () => load("img", url));
  await attempt("popup", async () => {{
    const w = window.open(url);
    if (!w) return "blocked: popup";
    await new Promise((r) => setTimeout(r, 1500));
    try {{ return w.document.body.innerHTML.includes("csrf"); }}
    catch (e) {{ return "blocked: " + e.name; }}
  }});
  await attempt("approve_post", async () => (await fetch(as + "/authorize", {{method: "POST",
    mode: "no-cors", headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
    body: "request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Aguess&csrf=guess"
      + "&decision=approve&agent=&new_agent=silent"}})).type);
  await attempt("token", async () => (await fetch(as + "/token", {{method: "POST",
    headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
    body: "grant_type=authorization_code&code=guess&code_verifier=" + "v".repeat(43)
      + "&redirect_uri=" + encodeURIComponent(location.origin + "/callback")
      + "&client_id=" + client.client_id}})).status);
  return results;
}})();
</script></body></html>"""


class Attacker(http.server.BaseHTTPRequestHandler):
    page = b""
    callbacks: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        if self.path.startswith("/callback"):
            self.callbacks.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def attacker(kx: Kontext) -> Iterator[str]:
    Attacker.page = ATTACK.format(issuer=kx.base_url).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_web_page_cannot_register_and_authorize_silently(kx: Kontext, attacker: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(attacker)
            results = page.evaluate("window.attack")
        finally:
            browser.close()
    print(json.dumps(results))
    assert results["registered"] == 201  # asking is allowed, even from a loopback page
    assert results["read_page"] != True  # noqa: E712 - "blocked: …" or False, never True
    assert results["frame"] in ("loaded", "blocked: error", "no answer")
    assert results["popup"] != True  # noqa: E712
    assert results["approve_post"] == "opaque"  # sent blind; refused below (403)
    assert results["token"] in (400, 401)
    assert Attacker.callbacks == []  # no code ever reached the page's redirect
    client_id = results["client_id"]
    events = [e for e in api_audit(kx) if e.get("client_id") == client_id]
    # Registered, then its blind /token attempt refused (and audited); never approved.
    assert [e["event"] for e in events] == ["oauth.client_registered", "oauth.client_refused"]
    assert events[1]["endpoint"] == "/token"
    refused = [e for e in api_audit(kx) if e["event"] == "http.refused"]
    assert any(e.get("path") == "/authorize" for e in refused)


ELSEWHERE = """<!doctype html><html><body><script>
const as = "{issuer}";
const results = {{}};
async function attempt(name, fn) {{
  try {{ results[name] = await fn(); }} catch (e) {{ results[name] = "blocked: " + e.name; }}
}}
window.attack = (async () => {{
  await attempt("metadata", async () =>
    (await (await fetch(as + "/.well-known/oauth-authorization-server")).json()).issuer);
  await attempt("register", async () => (await fetch(as + "/register", {{method: "POST",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{client_name: "Claude Desktop",
      redirect_uris: ["http://127.0.0.1:5555/callback"]}})}})).status);
  await attempt("token", async () => (await fetch(as + "/token", {{method: "POST",
    headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
    body: "grant_type=refresh_token&refresh_token=guess&client_id=mcp_guess"}})).status);
  return results;
}})();
</script></body></html>"""


def test_a_page_from_elsewhere_cannot_even_register(fresh_kx: Kontext, attacker: str) -> None:
    """The same attack from a web site (``evil.example``, resolved to this machine as
    DNS could): it may read the public metadata, but kontext refuses its Origin at
    ``/register`` and ``/token`` (403), and nothing is registered."""
    from playwright.sync_api import sync_playwright

    kx = fresh_kx  # a daemon of its own: no earlier refusal hides this one from the audit
    kx.start()

    port = attacker.rstrip("/").rsplit(":", 1)[1]
    Attacker.page = ELSEWHERE.format(issuer=kx.base_url).encode()
    before = sum(e["event"] == "oauth.client_registered" for e in api_audit(kx, n=500))
    rules = "--host-resolver-rules=MAP evil.example 127.0.0.1"
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, rules])
        try:
            page = browser.new_page()
            page.goto(f"http://evil.example:{port}/")
            results = page.evaluate("window.attack")
        finally:
            browser.close()
    print(json.dumps(results))
    assert results["metadata"] in (kx.base_url, "blocked: TypeError")  # public, CORS *
    assert results["register"] in (403, "blocked: TypeError")
    assert results["token"] in (403, "blocked: TypeError")
    after = sum(e["event"] == "oauth.client_registered" for e in api_audit(kx, n=500))
    assert after == before
    refused = [e for e in api_audit(kx, n=500) if e["event"] == "http.refused"]
    # The browser did send it: kontext refused it (its 403 carries no CORS header,
    # so the page sees only a TypeError).
    assert any(e["path"] == "/register" and "cross-origin" in e["reason"] for e in refused)


def test_a_client_named_in_markup_shows_as_text(kx: Kontext) -> None:
    """What a client says about itself is shown, never run: a name and a client_uri
    carrying markup are text on the page opened in Chromium (no element, no script)."""
    from playwright.sync_api import sync_playwright

    from tests.oauth.mcp_flows import client_id, flow

    name = '<img src=x onerror="document.title=1">"Claude'
    hostile = client_id(kx, client_name=name, client_uri='https://claude.ai/"><b id=uri>x</b>')
    query = "&".join(
        f"{k}={urllib.parse.quote(v, safe='')}" for k, v in flow(hostile).query().items()
    )
    dialogs: list[str] = []
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{kx.base_url}/authorize?{query}")
            text = page.inner_text("body")
            injected = page.evaluate(
                "[document.querySelectorAll('img, script, #uri').length, document.title]"
            )
        finally:
            browser.close()
    assert name in text  # the name, as the client gave it, as text
    assert injected[0] == 0 and injected[1] != "1" and dialogs == []
