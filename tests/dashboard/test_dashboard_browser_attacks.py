"""A page from another origin, open in the same Chromium as a live dashboard session.

The attacker's page is served by a real second server on 127.0.0.1, another port:
the worst case, since it is the *same site* as the dashboard (cookies ignore ports,
so even the SameSite=Strict cookie rides along). It tries to read the dashboard
(fetch, EventSource, a script tag, a frame) and to act (a no-cors POST, a form post,
a CORS request with a guessed CSRF header). It reads nothing, and nothing changes.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Kontext, api_agent, api_audit, api_new_agent
from tests.dashboard.harness import ARGS, CHROMIUM, link

pytest.importorskip("playwright")
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (.ci/run installs it)"
)

ATTACK = """<!doctype html><html><body>
<iframe id="frame" src="{dash}/dashboard/credentials"></iframe>
<iframe name="sink" id="sink"></iframe>
<form id="form" method="post" action="{dash}/dashboard/api/revoke-agent" target="sink"
      enctype="text/plain"><input name='{{"agent":"agent:{agent}","kill":true,"x":"'
      value='"}}'></form>
<script>
const dash = "{dash}";
const results = {{}};
async function attempt(name, fn) {{
  try {{ results[name] = await fn(); }} catch (e) {{ results[name] = "blocked: " + e.name; }}
}}
window.attack = (async () => {{
  await attempt("read", async () => (await fetch(dash + "/dashboard/api/credentials",
    {{credentials: "include"}})).status);
  await attempt("no_cors_post", async () => (await fetch(dash + "/dashboard/api/revoke-agent",
    {{method: "POST", mode: "no-cors", credentials: "include",
      headers: {{"Content-Type": "text/plain"}},
      body: JSON.stringify({{agent: "agent:{agent}", kill: true}})}})).type);
  await attempt("cors_post", async () => (await fetch(dash + "/dashboard/api/revoke-agent",
    {{method: "POST", credentials: "include",
      headers: {{"Content-Type": "application/json", "X-Kontext-CSRF": "guess"}},
      body: JSON.stringify({{agent: "agent:{agent}", kill: true}})}})).status);
  await attempt("stream", () => new Promise((resolve) => {{
    const source = new EventSource(dash + "/dashboard/api/events", {{withCredentials: true}});
    source.onmessage = () => resolve("read an event");
    source.onerror = () => {{ source.close(); resolve("blocked: error"); }};
  }}));
  await attempt("script", () => new Promise((resolve) => {{
    const s = document.createElement("script");
    s.src = dash + "/dashboard/api/overview";
    s.onload = () => resolve("loaded");
    s.onerror = () => resolve("blocked: error");
    document.body.append(s);
  }}));
  await attempt("frame", async () => {{
    try {{ return document.getElementById("frame").contentDocument.body.innerText || "empty"; }}
    catch (e) {{ return "blocked: " + e.name; }}
  }});
  document.getElementById("form").submit();
  return results;
}})();
</script></body></html>"""


@pytest.fixture(scope="module")
def play() -> Iterator[Any]:
    """Playwright, once per module (a second sync instance cannot start in one thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="module")
def browser(play: Any) -> Iterator[Any]:
    chromium = play.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield chromium
    chromium.close()


class _Attacker(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def attacker_site() -> Iterator[tuple[http.server.HTTPServer, type[_Attacker]]]:
    handler = type("Attacker", (_Attacker,), {})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_a_page_from_another_origin_cannot_read_or_act(
    kx: Kontext, browser: Any, attacker_site: tuple[http.server.HTTPServer, Any]
) -> None:
    server, handler = attacker_site
    agent = api_new_agent(kx, "github:pulls:read", prefix="xorigin")
    proc, env = kx.token_for(agent)
    context = browser.new_context()
    try:
        mine = context.new_page()  # the user's own dashboard tab: the session is live
        mine.goto(link(kx))
        mine.wait_for_selector("h1:text('Overview')")
        handler.page = ATTACK.format(dash=kx.base_url, agent=agent).encode()
        evil = context.new_page()
        evil.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        results = evil.evaluate("window.attack")
        evil.wait_for_timeout(1000)  # the form post's answer
        sink = evil.frame(name="sink")
        sink_text = sink.evaluate("document.body ? document.body.innerText : ''") if sink else ""
        framed = [f for f in evil.frames if f not in (evil.main_frame, sink)]
        # frame-ancestors 'none': Chromium shows its own error page in the frame instead
        rendered = [(f.url, f.evaluate("document.body.innerText")) for f in framed]
    finally:
        context.close()
    assert results["read"].startswith("blocked"), results  # CORS: no answer to read
    assert results["no_cors_post"] == "opaque", results  # sent, refused by the daemon
    assert results["cors_post"].startswith("blocked"), results  # preflight refused
    assert results["stream"].startswith("blocked"), results
    assert results["script"].startswith("blocked"), results
    assert results["frame"].startswith("blocked"), results
    assert len(rendered) == 1 and rendered[0][0].startswith("chrome-error:"), rendered
    assert "credential" not in rendered[0][1].lower()
    assert agent not in sink_text
    # Nothing changed: the agent is enabled, its credential alive, nothing was revoked.
    assert api_agent(kx, agent)["disabled"] is False
    assert kx.introspect(env["KONTEXT_TOKEN"])["active"] is True
    assert proc.poll() is None
    kx.close(proc)
    events = [e["event"] for e in api_audit(kx, agent)]
    assert "agent.revoked" not in events and "process.killed" not in events


REBOUND = """<!doctype html><html><body><script>
window.attack = (async () => {
  const out = {};
  for (const [name, path, init] of [
    ["read", "/dashboard/api/credentials", {}],
    ["page", "/dashboard/", {}],
    ["act", "/dashboard/api/revoke-agent", {method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({agent: "agent:AGENT", kill: true})}],
  ]) {
    try {
      const answer = await fetch(path, {credentials: "include", ...init});
      out[name] = [answer.status, await answer.text()];
    } catch (e) { out[name] = [0, "blocked: " + e.name]; }
  }
  return out;
})();
</script></body></html>"""


# Chromium's own wall against a public page calling loopback (Private/Local Network
# Access); browsers without it (Firefox) leave the daemon's Host check alone in front.
NO_PNA = (
    "--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,"
    "PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks"
)


@pytest.mark.parametrize("pna", ["chromium-default", "no-private-network-access"])
def test_a_rebound_page_reads_nothing_and_changes_nothing(kx: Kontext, play: Any, pna: str) -> None:
    """DNS rebinding, for real in Chromium: a page that came from evil.example on the
    dashboard's port, whose name now resolves to 127.0.0.1, calls the dashboard as its
    own origin. Chromium blocks it (Private Network Access); with that off, as in a
    browser without it, the daemon answers 421 (its Host is not ours) and the browser
    sent no cookie (it belongs to 127.0.0.1); a live session in the same browser is
    untouched either way."""
    agent = api_new_agent(kx, "github:pulls:read", prefix="rebound")
    args = [*ARGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"]
    if pna != "chromium-default":
        args.append(NO_PNA)
    evil = f"http://evil.example:{kx.port}/"
    chromium = play.chromium.launch(executable_path=CHROMIUM, args=args)
    try:
        context = chromium.new_context()
        mine = context.new_page()
        mine.goto(link(kx))
        mine.wait_for_selector("h1:text('Overview')")
        page = context.new_page()
        # The first answer for evil.example: the attacker's document (before the switch).
        page.route(
            evil,
            lambda route: route.fulfill(
                status=200, content_type="text/html", body=REBOUND.replace("AGENT", agent)
            ),
        )
        page.goto(evil)
        results = page.evaluate("window.attack")
        assert mine.context.cookies()  # the session was live all along
    finally:
        chromium.close()
    expected = 0 if pna == "chromium-default" else 421  # 0: the fetch failed in Chromium
    for name, (status, body) in results.items():
        assert status == expected, (name, status, body[:200])
        assert "kontext-csrf" not in body and agent not in body and "jti" not in body
    assert api_agent(kx, agent)["disabled"] is False
    assert not any(e["event"] == "agent.revoked" for e in api_audit(kx, agent))
