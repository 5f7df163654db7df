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
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
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
