"""Attacks on the public-client (MCP) endpoints, from where the attacker stands.

- another OS user registers a client and starts a flow: it may ask, but it can
  neither see nor answer the consent page — only the user's connections can;
  flooding ``/register`` pushes out only registrations nobody approved;
- a client named by a Client ID Metadata Document makes the daemon fetch an URL:
  only public https hosts or a loopback literal, no redirects, 5 KiB, 5 s, never
  the daemon itself;
- an unanswered consent page is audited when it expires (the clock moved on).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from tests.conftest import Kontext, api_audit, wait_until
from tests.oauth.mcp_flows import answer, authorize, flow, query_of, redeem

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

NOBODY_SCRIPT = """
import json, sys, urllib.request, urllib.error
base = sys.argv[1]
def call(method, path, body=None, headers=None):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
reg = call("POST", "/register", json.dumps({"redirect_uris": ["http://127.0.0.1:5555/cb"],
           "client_name": "Claude Desktop"}).encode(), {"Content-Type": "application/json"})
cid = json.loads(reg[1])["client_id"]
q = ("/authorize?response_type=code&client_id=" + cid + "&redirect_uri=http%3A%2F%2F127.0.0.1"
     "%3A5555%2Fcb&state=s&code_challenge=" + "A" * 43 + "&code_challenge_method=S256"
     "&scope=github%3Apulls%3Aread&resource=http%3A%2F%2F127.0.0.1%3A8765%2Fmcp")
page = call("GET", q)
post = call("POST", "/authorize", b"request_uri=x&csrf=y&decision=approve",
            {"Content-Type": "application/x-www-form-urlencoded", "Origin": base})
print(json.dumps({"register": reg[0], "client_id": cid, "query": q, "page": page[0],
                  "post": post[0]}))
"""


def test_another_os_user_can_ask_but_never_see_or_answer_the_page(kx: Kontext) -> None:
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("switching to another uid needs root (setpriv)")
    ran = subprocess.run(
        [*AS_NOBODY, "/usr/bin/python3", "-c", NOBODY_SCRIPT, kx.base_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["register"] == 201  # asking is open to everyone on the machine
    assert seen["page"] == 403 and seen["post"] == 403  # the page answers only the user
    # The user's own browser could open that request — and would be told plainly
    # that an unverified application asks; nothing happens without the click.
    with kx.http() as http:
        page = http.get(seen["query"])
    assert page.status_code == 200 and "unverified" in page.text
    registered = next(e for e in api_audit(kx) if e.get("client_id") == seen["client_id"])
    assert registered["event"] == "oauth.client_registered" and registered["peer_uid"] == 65534
    refused = [e for e in api_audit(kx) if e["event"] == "http.refused"]
    assert any("another OS user" in str(e.get("reason")) for e in refused)


FLOOD_SCRIPT = """
import http.client, json, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
body = json.dumps({"redirect_uris": ["http://127.0.0.1:5555/cb"], "client_name": "Flood"})
statuses = {}
for _ in range(count):
    conn.request("POST", "/register", body, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    answer.read()
    statuses[answer.status] = statuses.get(answer.status, 0) + 1
print(json.dumps(statuses))
"""


def test_a_registration_flood_is_bounded_and_never_evicts_an_approved_client(
    fresh_kx: Kontext,
) -> None:
    """Another OS user flooding ``/register`` (1,005 in a row) gets 10 a minute, then 429,
    so the audit log grows by a dozen rows, not a thousand (issue 17 item 6: 300
    registrations were 300 audit rows in half a second). The table is kept to
    ``MAX_CLIENTS`` too: past that the oldest nobody approved makes room, so a flood
    from the user's own uid cannot push out the client the user approved."""
    from kontextd.oauth.registration import MAX_CLIENTS
    from tests.oauth.mcp_flows import client_id, refresh, tokens

    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("switching to another uid needs root (setpriv)")
    k = fresh_kx
    k.start()
    f = flow(client_id(k))
    got = tokens(k, f)
    unapproved = flow(client_id(k))
    rows = len(api_audit(k, n=5000))
    flood = ["/usr/bin/python3", "-c", FLOOD_SCRIPT, str(k.port), str(MAX_CLIENTS + 5)]
    ran = subprocess.run([*AS_NOBODY, *flood], capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"201": 10, "429": MAX_CLIENTS - 5}
    after = api_audit(k, n=5000)
    assert len(after) - rows <= 12  # 10 registrations, the lock-out, nothing more
    assert [e["caller"] for e in after if e["event"] == "oauth.throttled"] == ["uid:65534"]
    ran = subprocess.run(flood, capture_output=True, text=True, timeout=600)  # the user's uid
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"201": MAX_CLIENTS + 5}
    rotated = refresh(k, f, got["refresh_token"])
    assert rotated.status_code == 200, rotated.text  # the approved client is still there
    gone = authorize(k, unapproved.query())
    assert gone.status_code == 400 and "not registered" in gone.text  # it made room
    with k.http() as http:
        assert http.get("/.well-known/oauth-authorization-server").status_code == 200


class Documents(http.server.BaseHTTPRequestHandler):
    """Client ID Metadata Documents, good and hostile, on a loopback port."""

    routes: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        behaviour = self.routes.get(self.path, (404, b"", {}))
        if callable(behaviour):
            behaviour = behaviour(self)
        status, body, headers = behaviour
        try:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the daemon gave up on a slow answer and hung up

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def documents() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Documents)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _doc(url: str, **extra: Any) -> bytes:
    doc = {
        "client_id": url,
        "client_name": "Inspector From A Document",
        "redirect_uris": ["http://127.0.0.1:9999/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        **extra,
    }
    return json.dumps(doc).encode()


def test_a_metadata_document_on_loopback_names_a_client(kx: Kontext, documents: str) -> None:
    url = f"{documents}/good.json"
    Documents.routes["/good.json"] = (200, _doc(url), {})
    f = flow(url)
    page = authorize(kx, f.query())
    assert page.status_code == 200, page.text
    assert "Inspector From A Document" in page.text and "unverified" in page.text
    decided = answer(kx, page.text, agent="", new_agent="inspector-from-a-document")
    code = query_of(decided.headers["location"])["code"]
    got = redeem(kx, f, code)
    assert got.status_code == 200, got.text
    assert kx.introspect(got.json()["access_token"])["client_id"] == url


@pytest.mark.parametrize(
    ("path", "behaviour", "why"),
    [
        ("/big.json", lambda url: (200, b" " * 6000 + _doc(url), {}), "larger than"),
        ("/chunked-big.json", lambda url: (200, b" " * 9000, {"Content-Length": "9000"}), "larger"),
        ("/other.json", lambda url: (200, _doc("https://claude.ai/oauth.json"), {}), "another"),
        (
            "/secret.json",
            lambda url: (200, _doc(url, token_endpoint_auth_method="client_secret_basic"), {}),
            "public clients only",
        ),
        (
            "/web.json",
            lambda url: (200, _doc(url, redirect_uris=["https://evil.example/cb"]), {}),
            "redirect",
        ),
        ("/notjson.json", lambda url: (200, b"<html>", {}), "not JSON"),
        ("/deep.json", lambda url: (200, b"[" * 2500 + b"]" * 2500, {}), "nested deeper"),
        ("/gone.json", lambda url: (404, b"", {}), "HTTP 404"),
    ],
)
def test_hostile_metadata_documents_are_refused(
    kx: Kontext, documents: str, path: str, behaviour: Any, why: str
) -> None:
    url = f"{documents}{path}"
    Documents.routes[path] = behaviour(url)
    page = authorize(kx, flow(url).query())
    assert page.status_code == 400 and "location" not in page.headers
    assert why in page.text, page.text


def test_a_document_that_redirects_inward_is_not_followed(kx: Kontext, documents: str) -> None:
    """A redirect to the daemon's own port (or any internal address) is never fetched."""
    Documents.routes["/moved.json"] = (302, b"", {"Location": f"{kx.base_url}/jwks.json"})
    page = authorize(kx, flow(f"{documents}/moved.json").query())
    assert page.status_code == 400 and "follows no redirects" in page.text


def test_a_slow_document_is_given_up_on(kx: Kontext, documents: str) -> None:
    def slow(handler: Documents) -> tuple[int, bytes, dict[str, str]]:
        time.sleep(8)
        return 200, b"{}", {}

    Documents.routes["/slow.json"] = slow
    page = authorize(kx, flow(f"{documents}/slow.json").query())
    assert page.status_code == 400 and "cannot fetch" in page.text


@pytest.mark.parametrize(
    ("client", "why"),
    [
        ("https://localhost/client.json", "non-public address"),  # resolves to loopback
        ("https://127.0.0.1/client.json", "non-public address"),
        ("https://10.0.0.1/client.json", "non-public address"),
        ("https://[::ffff:127.0.0.1]/client.json", "non-public address"),
        ("http://example.com/client.json", "unknown client"),  # plain http off loopback
        ("https://example.com/", "unknown client"),  # no path: not a document URL
        ("https://example.com/a/../client.json", "unknown client"),
    ],
)
def test_documents_are_fetched_only_from_public_https_hosts(
    kx: Kontext, client: str, why: str
) -> None:
    page = authorize(kx, flow(client).query())
    assert page.status_code == 400 and why in page.text, page.text


def test_the_daemon_never_fetches_itself(kx: Kontext) -> None:
    page = authorize(kx, flow(f"{kx.base_url}/.well-known/oauth-authorization-server").query())
    assert page.status_code == 400 and "kontextd itself" in page.text


def test_an_unanswered_consent_page_is_audited_when_it_expires(skewed_kx: Any) -> None:
    k, clock = skewed_kx
    with k.http() as http:
        registered = http.post(
            "/register", json={"redirect_uris": ["http://127.0.0.1:9999/callback"]}
        ).json()
    f = flow(registered["client_id"])
    assert authorize(k, f.query()).status_code == 200
    clock.set(400)  # past the page's 5 minutes, on the wall clock the daemon reads
    assert wait_until(
        lambda: any(
            e["event"] == "consent.expired" and e["client_id"] == f.client_id for e in api_audit(k)
        ),
        timeout=30,
    )


def test_an_approval_the_client_never_collects_is_audited_when_its_code_expires(
    skewed_kx: Any,
) -> None:
    """The user approved, the client never came to /token: no grant is made, and the
    record says so once the code's 60 s (and its replay window) have passed."""
    k, clock = skewed_kx
    with k.http() as http:
        registered = http.post(
            "/register", json={"redirect_uris": ["http://127.0.0.1:9999/callback"]}
        ).json()
    f = flow(registered["client_id"])
    page = authorize(k, f.query())
    decided = answer(k, page.text, agent="", new_agent="never-collected")
    assert "code" in query_of(decided.headers["location"])
    clock.set(200)  # past the code's life and the replay window after it
    assert wait_until(
        lambda: any(
            e["event"] == "consent.expired" and e["client_id"] == f.client_id for e in api_audit(k)
        ),
        timeout=30,
    )
    (expired,) = [e for e in api_audit(k) if e["event"] == "consent.expired"]
    assert "approved for agent:never-collected" in expired["reason"]
    assert "did not redeem" in expired["reason"]
    assert not [e for e in api_audit(k) if e["event"] == "consent.granted"]


def test_a_page_pushed_out_by_a_flood_of_requests_is_audited(fresh_kx: Kontext) -> None:
    """A program of the user's loading /authorize over and over evicts only the oldest
    open requests (at most 256 are kept); the one it pushed out is on the record, and
    answering its page approves nothing."""
    from kontextd.oauth.state import MAX_PENDING
    from tests.oauth.mcp_flows import client_id

    k = fresh_kx
    k.start()
    first = flow(client_id(k))
    page = authorize(k, first.query())
    flood = flow(client_id(k))
    with k.http() as http:
        for _ in range(MAX_PENDING):
            assert http.get("/authorize", params=flood.query()).status_code == 200
    late = answer(k, page.text, agent="", new_agent="pushed-out")
    assert late.status_code == 400 and "location" not in late.headers
    expired = [e for e in api_audit(k) if e["event"] == "consent.expired"]
    assert [e["client_id"] for e in expired] == [first.client_id]
    assert "pushed out by newer requests" in expired[0]["reason"]


@pytest.fixture
def skewed_kx(fresh_kx: Kontext, tmp_path: Any) -> Iterator[tuple[Kontext, Any]]:
    """A daemon whose wall clock a test can move (libfaketime, as tests/faults/test_clock)."""
    from tests.faults.test_clock import LIBFAKETIME, Clock

    if not os.path.exists(LIBFAKETIME):
        pytest.skip("libfaketime is not installed (Debian: faketime)")
    clock = Clock(tmp_path / "faketime")
    env = {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(clock.path),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    fresh_kx.ok("daemon", "start", env=env)
    yield fresh_kx, clock
