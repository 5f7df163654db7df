"""Attacks on the loopback port's HTTP itself, from where each attacker stands.

Request smuggling with ambiguous framing (RFC 9112 §6.3), slow and oversized
heads, another OS user (``setpriv`` to uid 65534) opening connections or
answering the user's consent page, and guessing to lock the user out.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Kontext, api_audit

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def as_nobody(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a standard-library Python snippet as uid 65534 (another local user)."""
    if os.getuid() != 0:
        pytest.skip("switching to another uid needs root (setpriv)")
    proc = subprocess.run(
        [*AS_NOBODY, sys.executable, "-I", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on one connection and read until the daemon hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


def statuses(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


# -- request smuggling ---------------------------------------------------------------

AMBIGUOUS = [
    "Content-Length: {n}\r\nContent-Length: {n}",
    "Content-Length: {n}\r\nContent-Length: 0",
    "Content-Length: +{n}",
    "Content-Length: {n}, {n}",
    "Content-Length: {n}\r\nTransfer-Encoding: chunked",
    "Transfer-Encoding: chunked, identity\r\nContent-Length: {n}",
    "Content-Length: 0x{n}",
]


@pytest.mark.parametrize("framing", AMBIGUOUS)
def test_ambiguous_content_length_never_smuggles_a_second_request(
    kx: Kontext, framing: str
) -> None:
    """A request hidden in a body must never be answered as a request of its own."""
    host = f"127.0.0.1:{kx.port}"
    hidden = f"GET /jwks.json HTTP/1.1\r\nHost: {host}\r\n\r\n"
    head = framing.format(n=len(hidden))
    raw = exchange(
        kx.port,
        (
            f"POST /introspect HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n{head}\r\n\r\n{hidden}"
        ).encode(),
    )
    assert statuses(raw) == [b"HTTP/1.1 400 Bad Request"], raw[:300]
    assert b'"keys"' not in raw  # the hidden GET /jwks.json was not served


@pytest.mark.parametrize("framing", AMBIGUOUS[:5])
def test_ambiguous_content_length_through_the_gateway_never_reaches_the_upstream(
    gw_kx: Kontext, github: object, framing: str
) -> None:
    from tests.upstream.fake_github import FakeGitHub

    assert isinstance(github, FakeGitHub)
    host = f"127.0.0.1:{gw_kx.port}"
    hidden = f"DELETE /gw/github/repos/acme/backend/pulls/1 HTTP/1.1\r\nHost: {host}\r\n\r\n"
    head = framing.format(n=len(hidden))
    before = len(github.seen)
    raw = exchange(
        gw_kx.port,
        f"POST /gw/github/repos/acme/backend/issues HTTP/1.1\r\nHost: {host}\r\n"
        f"{head}\r\n\r\n{hidden}".encode(),
    )
    assert statuses(raw) == [b"HTTP/1.1 400 Bad Request"], raw[:300]
    assert github.seen[before:] == []


# -- slow and oversized heads -----------------------------------------------------------


def test_a_head_sent_too_slowly_is_cut_off(kx: Kontext) -> None:
    """Slow-loris: the whole head has a deadline, not each read (HEAD_DEADLINE, 10 s)."""
    sock = socket.create_connection(("127.0.0.1", kx.port), timeout=60)
    with sock:
        sock.sendall(b"GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: a\r\n")  # one header line every half second
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.5)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert httpx.get(f"{kx.base_url}/jwks.json").status_code == 200


SLOW_BODY = """
import socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"POST /introspect HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\n"
          b"Content-Type: application/x-www-form-urlencoded\\r\\n"
          b"Content-Length: 1000\\r\\n\\r\\n" % port)
s.settimeout(0.5)
answer, hang_guard = b"", time.monotonic() + 90
while time.monotonic() < hang_guard:
    try:
        s.sendall(b"a")  # one byte of the body every half second
        chunk = s.recv(4096)
    except (TimeoutError, socket.timeout):
        continue
    except OSError:
        break
    if not chunk:
        break
    answer += chunk
print(answer.split(b"\\r\\n", 1)[0].decode())
"""


def test_a_body_sent_too_slowly_is_cut_off(kx: Kontext) -> None:
    """Slow-loris after the head, by another OS user: a body trickled a byte at a
    time held a connection for ever; it must arrive whole within 10 s of its head."""
    first_line = as_nobody(SLOW_BODY, str(kx.port)).stdout.strip()
    assert first_line == "HTTP/1.1 408 Request Timeout"
    assert httpx.get(f"{kx.base_url}/jwks.json").status_code == 200


def test_a_head_over_its_byte_budget_is_431_and_the_end(kx: Kontext) -> None:
    lines = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(80))
    raw = exchange(kx.port, b"GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % kx.port + lines)
    assert raw.startswith(b"HTTP/1.1 431 "), raw[:200]
    one_line = b"GET /jwks.json HTTP/1.1\r\nX-Long: " + b"b" * 200_000
    assert exchange(kx.port, one_line).startswith(b"HTTP/1.1 431 ")


# -- other OS users ----------------------------------------------------------------------

STRANGER_FLOOD = """
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
time.sleep(1.0)
alive = 0
for s in socks:
    s.settimeout(0.2)
    try:
        s.sendall(b"GET /jwks.json HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\n\\r\\n" % port)
        if s.recv(100).startswith(b"HTTP/1.1 200"):
            alive += 1
    except OSError:
        pass
print(alive)
"""


def test_another_users_connections_are_capped(kx: Kontext) -> None:
    """Anyone on the machine can connect to 127.0.0.1: one other uid gets 64 at most,
    and the user's own connections are still served."""
    from kontextd.api.web.server import PER_STRANGER

    served = int(as_nobody(STRANGER_FLOOD, str(kx.port), str(PER_STRANGER + 100)).stdout)
    assert 0 < served <= PER_STRANGER
    assert httpx.get(f"{kx.base_url}/jwks.json").status_code == 200


STRANGER_PAGE = """
import json, socket, sys, urllib.parse
port, uri = int(sys.argv[1]), sys.argv[2]
query = urllib.parse.urlencode({"client_id": "kontext", "request_uri": uri})
def ask(data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.split(b"\\r\\n", 1)[0].decode(), b'name="csrf"' in out
page = ask(b"GET /authorize?%s HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\nConnection: close\\r\\n\\r\\n"
           % (query.encode(), port))
form = urllib.parse.urlencode({"request_uri": uri, "csrf": "x", "decision": "approve"}).encode()
post = ask(b"POST /authorize HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\nConnection: close\\r\\n"
           b"Content-Type: application/x-www-form-urlencoded\\r\\nContent-Length: %d\\r\\n\\r\\n%s"
           % (port, len(form), form))
print(json.dumps([page, post]))
"""


def _push_login(k: Kontext) -> str:
    import base64
    import hashlib

    secret = (k.runtime / "oauth-client-secret").read_text().strip()
    verifier = base64.urlsafe_b64encode(os.urandom(40)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    with k.http() as http:
        pushed = http.post(
            "/par",
            auth=("kontext", secret),
            data={
                "response_type": "code",
                "redirect_uri": "http://127.0.0.1:9/callback/x",
                "scope": "openid",
                "code_challenge": challenge.rstrip(b"=").decode(),
                "code_challenge_method": "S256",
            },
        )
    assert pushed.status_code == 201, pushed.text
    return str(pushed.json()["request_uri"])


def test_another_user_can_neither_load_nor_answer_the_login_page(kx: Kontext) -> None:
    """The authorize URL is world-readable in the browser's argv: a stranger who
    copies it gets 403 on the page and on the decision; the user's page still works."""
    uri = _push_login(kx)
    page, post = json.loads(as_nobody(STRANGER_PAGE, str(kx.port), uri).stdout)
    assert page == ["HTTP/1.1 403 Forbidden", False]
    assert post[0] == "HTTP/1.1 403 Forbidden"
    with kx.http() as http:
        mine = http.get("/authorize", params={"client_id": "kontext", "request_uri": uri})
    assert mine.status_code == 200 and 'name="csrf"' in mine.text
    refused = [e for e in api_audit(kx, n=200) if e["event"] == "http.refused"]
    assert any(e["reason"] == "another OS user's connection refused" for e in refused)


STRANGER_GUESSES = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
form = b"grant_type=authorization_code&code=guess&client_id=kontext&client_secret=guess"
last = ""
for _ in range(count):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /token HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\nConnection: close\\r\\n"
                  b"Content-Type: application/x-www-form-urlencoded\\r\\n"
                  b"Content-Length: %d\\r\\n\\r\\n%s" % (port, len(form), form))
        last = s.recv(200).split(b"\\r\\n", 1)[0].decode()
print(last)
"""


def test_another_users_guessing_never_locks_the_user_out(fresh_kx: Kontext) -> None:
    """The throttle counts per caller: a stranger's failures lock only the stranger."""
    k = fresh_kx
    k.start()
    last = as_nobody(STRANGER_GUESSES, str(k.port), "30").stdout.strip()
    assert last == "HTTP/1.1 429 Too Many Requests"
    with k.http() as http:
        mine = http.post("/token", data={"grant_type": "nope"})
    assert mine.status_code == 400 and mine.json()["error"] == "unsupported_grant_type"
    locked = [e for e in api_audit(k, n=500) if e["event"] == "oauth.throttled"]
    assert len(locked) == 1 and locked[0]["caller"] == f"uid:{NOBODY}"
    assert locked[0]["endpoint"] == "/token"


KEPT_AT_THE_LIMIT = """
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
form = b"grant_type=authorization_code&code=guess&client_id=kontext&client_secret=guess"
end, answers = time.monotonic() + seconds, set()
while time.monotonic() < end:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /token HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\nConnection: close\\r\\n"
                  b"Content-Type: application/x-www-form-urlencoded\\r\\n"
                  b"Content-Length: %d\\r\\n\\r\\n%s" % (port, len(form), form))
        answers.add(s.recv(200).split(b"\\r\\n", 1)[0].decode())
    time.sleep(0.05)
print(sorted(answers))
"""


def test_a_stranger_kept_at_the_limit_adds_one_audit_row_a_minute(fresh_kx: Kontext) -> None:
    """Issue 17 items 6 and 11: a caller kept at the limit locks itself out again each
    time a failure leaves the 10 s window; each lock-out was an audit row (200 a
    minute from another OS user, no token). Guessing for 25 s gives one."""
    k = fresh_kx
    k.start()
    seen = as_nobody(KEPT_AT_THE_LIMIT, str(k.port), "25").stdout
    assert "HTTP/1.1 429 Too Many Requests" in seen and "HTTP/1.1 401 Unauthorized" in seen
    locked = [e for e in api_audit(k, n=500) if e["event"] == "oauth.throttled"]
    assert [(e["caller"], e["endpoint"]) for e in locked] == [(f"uid:{NOBODY}", "/token")]


EVERY_ROUTE = """
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
FORM, JSON = b"application/x-www-form-urlencoded", b"application/json"
CODE = b"grant_type=authorization_code&code=g&client_id=kontext&client_secret=g"
WEB = b"Sec-Fetch-Site: cross-site\\r\\nOrigin: http://127.0.0.1:1\\r\\n"
CALLS = [
    (b"POST", b"/token", CODE, FORM, b""),
    (b"POST", b"/token", CODE, FORM, WEB),
    (b"POST", b"/par", b"response_type=code&client_id=kontext&client_secret=bad", FORM, b""),
    (b"GET", b"/authorize?client_id=kontext&request_uri=urn:g", b"", FORM, b""),
    (b"POST", b"/authorize", b"request_uri=urn:g&csrf=g", FORM, b""),
    (b"POST", b"/revoke", b"token=abc", FORM, b""),
    (b"POST", b"/introspect", b"token=abc", FORM, b""),
    (b"POST", b"/register", b'{"redirect_uris": ["https://e.example/cb"]}', JSON, b""),
    (b"POST", b"/register", b'{"redirect_uris": ["http://127.0.0.1:9/cb"]}', JSON, WEB),
    (b"GET", b"/gw/github/user", b"", FORM, b""),
    (b"GET", b"/gw/nothing/user", b"", FORM, b""),
    (b"GET", b"/dashboard/api/overview", b"", FORM, b""),
    (b"GET", b"/jwks.json", b"", FORM, b"Host: evil.example\\r\\n"),
]
sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    for method, path, body, kind, extra in CALLS:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            host = b"" if extra.startswith(b"Host") else b"Host: 127.0.0.1:%d\\r\\n" % port
            head = b"%s %s HTTP/1.1\\r\\n%s%sConnection: close\\r\\n" % (method, path, host, extra)
            s.sendall(head + b"Content-Type: %s\\r\\nContent-Length: %d\\r\\n\\r\\n%s"
                      % (kind, len(body), body))
            s.recv(100)
        sent += 1
print(sent)
"""


def test_another_user_on_every_route_cannot_flood_the_audit(fresh_kx: Kontext) -> None:
    """Issue 17 item 6, whole: another OS user with no token calls every loopback
    route (bad codes and secrets, guessed pages, registrations as itself and as a
    page, the gateway, the dashboard, a rebound Host) as fast as it can for 20 s.
    Each kind of row has its own bound; together a few dozen, however many calls (it
    was hundreds of rows a second through /register and ~200 a minute of lock-outs)."""
    k = fresh_kx
    k.start()
    before = len(api_audit(k, n=10000))
    sent = int(as_nobody(EVERY_ROUTE, str(k.port), "20", timeout=180).stdout)
    after = api_audit(k, n=10000)
    assert sent > 13  # every route at least once
    assert len(after) - before <= 45, collections.Counter(e["event"] for e in after)


# -- many connections, no thread each ------------------------------------------------------


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_two_thousand_idle_connections_are_served_without_a_thread_each(kx: Kontext) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2200:
        pytest.skip(f"needs 2,200 open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2200), hard))
    pid = kx.daemon_pid
    request = b"GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % kx.port
    socks: list[socket.socket] = []
    try:
        before = _threads(pid)
        for _ in range(2000):
            sock = socket.create_connection(("127.0.0.1", kx.port), timeout=30)
            sock.sendall(request)
            socks.append(sock)
        answered = sum(s.recv(65536).startswith(b"HTTP/1.1 200") for s in socks)
        during = _threads(pid)
    finally:
        for sock in socks:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert answered == 2000
    assert during <= before + 2, (before, during)  # not a thread per connection


# -- answers the OAuth way (RFC 6749 §5.2, RFC 6750 §3.1) -----------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/token", "text/plain"),
        ("/par", "application/json"),
        ("/revoke", "text/plain"),
        ("/revoke", "application/x-www-form-urlencoded"),  # a form without 'token'
    ],
)
def test_malformed_oauth_requests_get_rfc_6749_errors(
    kx: Kontext, path: str, content_type: str
) -> None:
    with kx.http() as http:
        answer = http.post(path, content=b"{}", headers={"Content-Type": content_type})
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "invalid_request" and body["error_description"]


def test_a_bad_client_gets_basic_with_a_realm(kx: Kontext) -> None:
    with kx.http() as http:
        answer = http.post(
            "/token", data={"grant_type": "refresh_token"}, auth=("kontext", "wrong")
        )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="kontext"'


def test_loopback_errors_stay_json_lines(kx: Kontext) -> None:
    with kx.http() as http:
        answer = http.get("/nope")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    json.dumps(answer.json())


@pytest.fixture(scope="module")
def github() -> object:
    from tests.upstream.fake_github import FakeGitHub

    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw_kx(github: object) -> object:
    from tests.conftest import gateway_daemon
    from tests.upstream.fake_github import API_KEY

    with gateway_daemon(github.url, API_KEY) as k:  # type: ignore[attr-defined]
        yield k
