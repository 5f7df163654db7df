"""Attacks through the gateway: overriding the method or path, speaking for the
gateway, hiding the token in the URL, following upstream links with the token,
and flooding the audit without one — from an agent with a real credential, another
local user, and a web page in a real Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Kontext, api_audit, api_new_agent, gateway_daemon
from tests.upstream.fake_github import API_KEY, PULL_COUNT, FakeGitHub

PULLS = "/gw/github/repos/acme/backend/pulls"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(github: FakeGitHub) -> Iterator[Kontext]:
    with gateway_daemon(github.url, API_KEY) as k:
        yield k


def held_token(k: Kontext, scope: str, prefix: str) -> Iterator[str]:
    """A new agent's credential for acme/backend, held open by ``kontext exec``."""
    agent = api_new_agent(k, scope, prefix=prefix)
    proc, env = k.token_for(agent, "--target", "acme/backend")
    yield env["KONTEXT_TOKEN"]
    k.close(proc)


@pytest.fixture(scope="module")
def token(gw: Kontext) -> Iterator[str]:
    """A reader's credential (pulls:read)."""
    yield from held_token(gw, "github:pulls:read", "gwattack")


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (f"{PULLS}/1", {"X-HTTP-Method-Override": "DELETE"}),
        (f"{PULLS}/1", {"X-HTTP-Method": "PUT"}),
        (f"{PULLS}/1", {"X-Method-Override": "PATCH"}),
        (f"{PULLS}/1", {"X_HTTP_Method_Override": "DELETE"}),  # a CGI upstream's twin
        (f"{PULLS}/1", {"X-Original-URL": "/repos/acme/other/pulls/1"}),
        (f"{PULLS}/1?_method=DELETE", {}),
        (f"{PULLS}/1?.method=DELETE", {}),  # PHP reads '.method' as '_method'
    ],
)
def test_method_and_url_overrides_never_reach_the_upstream(
    gw: Kontext, github: FakeGitHub, token: str, path: str, headers: dict[str, str]
) -> None:
    """A route rule allows a method on a path; an upstream honouring an override
    would run another one — so the gateway refuses the request."""
    before = len(github.seen)
    with gw.http() as http:
        answer = http.get(path, headers=bearer(token, **headers))
    assert answer.status_code == 400 and "not allowed through the gateway" in answer.text
    assert github.seen[before:] == []


CONTENTS = "/gw/github/repos/acme/backend/contents/form.txt"
MULTIPART = "multipart/form-data; boundary=XyZ"


def multipart(*fields: tuple[str, str]) -> bytes:
    """A multipart/form-data body (RFC 7578) with these (name, value) fields."""
    parts = [
        f'--XyZ\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    return ("".join(parts) + "--XyZ--\r\n").encode()


@pytest.fixture(scope="module")
def writer(gw: Kontext) -> Iterator[str]:
    """A credential that may PUT contents (contents:write)."""
    yield from held_token(gw, "github:contents:write", "gwform")


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("application/x-www-form-urlencoded", b"message=hi&_method=DELETE"),
        ("application/x-www-form-urlencoded; charset=utf-8", b"a=1&_METHOD=delete"),
        ("Multipart/Form-Data; boundary=XyZ", multipart(("message", "hi"), ("_method", "DELETE"))),
        (MULTIPART, multipart(("%5Fmethod", "DELETE"))),  # a percent-encoded name
        ("application/x-www-form-urlencoded", b"a=1&%20.method=DELETE"),  # PHP: '_method'
        # The boundary the server is told is not the one the body uses.
        ("multipart/form-data; boundary=Other", multipart(("_method", "DELETE"))),
    ],
    ids=[
        "urlencoded",
        "urlencoded-charset",
        "multipart",
        "multipart-encoded-name",
        "php-mangled-name",
        "other-boundary",
    ],
)
def test_a_form_field_cannot_override_the_method(
    gw: Kontext, github: FakeGitHub, writer: str, kind: str, body: bytes
) -> None:
    """Rack, Symfony and Laravel run a POSTed form's ``_method`` instead of POST:
    the body's twin of ``?_method=``, refused before anything goes upstream."""
    before, audited = len(github.seen), _form_refusals(gw)
    with gw.http() as http:
        answer = http.put(CONTENTS, headers=bearer(writer, **{"Content-Type": kind}), content=body)
    assert answer.status_code == 400 and "form field is not allowed" in answer.text
    assert github.seen[before:] == []
    assert _form_refusals(gw) == audited + 1  # the refusal is audited, with its reason


def _form_refusals(k: Kontext) -> int:
    events = api_audit(k, n=200)
    return sum(e["event"] == "api.denied" and "form field" in e.get("reason", "") for e in events)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("application/x-www-form-urlencoded", b"message=create&method_name=_method"),
        (MULTIPART, multipart(("note", 'Rack reads name="_method" as the method'))),
    ],
    ids=["urlencoded", "multipart"],
)
def test_an_ordinary_form_reaches_the_upstream_intact(
    gw: Kontext, writer: str, kind: str, body: bytes
) -> None:
    """Only a field *named* like an override is refused; values and file contents pass."""
    import hashlib

    with gw.http() as http:
        answer = http.put(CONTENTS, headers=bearer(writer, **{"Content-Type": kind}), content=body)
    assert answer.status_code == 201
    assert answer.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize(
    "kinds",
    [
        ["application/json", "application/x-www-form-urlencoded"],
        ["application/x-www-form-urlencoded, application/json"],  # PHP reads the first
    ],
    ids=["two-headers", "a-list"],
)
def test_a_form_hidden_behind_another_content_type_is_refused(
    gw: Kontext, github: FakeGitHub, writer: str, kinds: list[str]
) -> None:
    """Servers differ on which of several Content-Types they believe: a request that
    names a form and something else is refused, so no server reads an unchecked form."""
    before = len(github.seen)
    sent = [("Authorization", f"Bearer {writer}"), *(("Content-Type", k) for k in kinds)]
    with gw.http() as http:
        answer = http.put(CONTENTS, headers=sent, content=b"_method=DELETE")
    assert answer.status_code == 400 and "send one Content-Type" in answer.text
    assert github.seen[before:] == []


def test_a_form_too_large_to_check_is_refused(gw: Kontext, github: FakeGitHub, writer: str) -> None:
    """A form is read whole to be checked, so only up to 1 MiB; a larger one is 413."""
    before = len(github.seen)
    body = b"a=" + b"x" * (1024 * 1024)
    kind = {"Content-Type": "application/x-www-form-urlencoded"}
    with gw.http() as http:
        answer = http.put(CONTENTS, headers=bearer(writer, **kind), content=body)
    assert answer.status_code == 413 and "send large content as JSON or raw bytes" in answer.text
    assert github.seen[before:] == []


def test_forwarding_headers_stay_on_this_hop(gw: Kontext, github: FakeGitHub, token: str) -> None:
    spoofed = {
        "X-Forwarded-For": "10.0.0.1",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=10.0.0.1",
        "X-Real-IP": "10.0.0.1",
        "X_Forwarded_For": "10.0.0.1",  # read as X-Forwarded-For by a CGI-style upstream
        "Content_Length": "0",
    }
    before = len(github.seen)
    with gw.http() as http:
        assert http.get(f"{PULLS}/1", headers=bearer(token, **spoofed)).status_code == 200
    [seen] = github.seen[before:]
    names = {k.lower() for k in seen.headers}
    assert not names & {k.lower() for k in spoofed}


@pytest.mark.parametrize(
    "path",
    [
        "/gw/github/repos/acme/backend/pulls/%252e%252e/%252e%252e/other/pulls/1",
        "/gw/github/repos/acme/%252e%252e/other/pulls/1",
        "/gw/github/repos/acme/backend/pulls/%25252e%25252e/1",
    ],
)
def test_double_encoded_dots_are_refused(
    gw: Kontext, github: FakeGitHub, token: str, path: str
) -> None:
    before = len(github.seen)
    with gw.http() as http:
        answer = http.get(path, headers=bearer(token))
    assert answer.status_code == 403 and "unsafe path" in answer.text
    assert github.seen[before:] == []


def test_the_token_in_the_path_or_query_is_refused(
    gw: Kontext, github: FakeGitHub, token: str
) -> None:
    before = len(github.seen)
    with gw.http() as http:
        in_path = http.get(f"{PULLS}/{token}", headers=bearer(token))
        in_query = http.get(f"{PULLS}/1", params={"t": token}, headers=bearer(token))
        # Percent-encoded three times over: an upstream that decodes as often reads it.
        hidden = "".join(f"%252525{ord(c):02X}" for c in token)
        encoded = http.get(f"{PULLS}/1?t={hidden}", headers=bearer(token))
    assert in_path.status_code == in_query.status_code == encoded.status_code == 400
    assert github.seen[before:] == []


def test_pagination_links_lead_back_through_the_gateway(
    gw: Kontext, github: FakeGitHub, token: str
) -> None:
    """GitHub's ``Link`` names the upstream; a paginating client (octokit, PyGithub,
    gh) follows it. Rewritten, every page comes through the gateway, and the
    upstream never sees our token."""
    seen_before = len(github.seen)
    numbers: list[int] = []
    url: str | None = f"{gw.base_url}{PULLS}?per_page=2"
    pages = 0
    with httpx.Client(timeout=10) as http:
        while url is not None:
            answer = http.get(url, headers=bearer(token))
            assert answer.status_code == 200, answer.text
            numbers += [item["number"] for item in answer.json()]
            for link in answer.headers["Link"].split(","):
                assert link.strip().startswith(f"<{gw.base_url}/gw/github/"), link
            url = answer.links.get("next", {}).get("url")
            pages += 1
    assert numbers == list(range(1, PULL_COUNT + 1))
    assert pages == 3
    for seen in github.seen[seen_before:]:
        assert token not in str(seen.headers) and token not in seen.path
        assert seen.headers.get("Authorization") == f"Bearer {API_KEY}"


FLOOD = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    for n in range(count):
        path = "/gw/github/repos/acme/backend/pulls/%d" if n % 2 else "/gw/nope%d/x"
        s.sendall(b"GET %s HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\n\\r\\n"
                  % ((path % n).encode(), port))
        got = b""
        while b"\\r\\n\\r\\n" not in got:
            got += s.recv(65536)
        head, _, rest = got.partition(b"\\r\\n\\r\\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\\r\\n")[0])
        while len(rest) < length:
            rest += s.recv(65536)
print("done")
"""


def _denied(k: Kontext) -> int:
    return sum(e["event"] in ("api.denied", "http.refused") for e in api_audit(k, n=10000))


def test_another_user_without_a_token_cannot_flood_the_audit(gw: Kontext) -> None:
    """Any local user can call the gateway with no token: 400 calls add a few rows."""
    if os.getuid() != 0:
        pytest.skip("switching to another uid needs root (setpriv)")
    before = _denied(gw)
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-I",
            "-c",
            FLOOD,
            str(gw.port),
            "400",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert proc.stdout.strip() == "done", proc.stderr
    assert _denied(gw) - before <= 3


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_a_web_page_cannot_reach_the_gateway_or_flood_the_audit(
    gw: Kontext, github: FakeGitHub
) -> None:
    """``<img src>`` and navigations carry no Origin, but a browser says what it is
    fetching (Sec-Fetch-*): the gateway refuses them before anything else."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    before, seen = _denied(gw), len(github.seen)
    images = "".join(f'<img src="{gw.base_url}{PULLS}/{n}">' for n in range(60))
    with sync_playwright() as play:
        browser = play.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.set_content(f"<html><body>{images}</body></html>", wait_until="load")
            status = page.goto(f"{gw.base_url}{PULLS}/1")
            assert status is not None and status.status == 403
            assert "browser navigation or subresource refused" in page.content()
        finally:
            browser.close()
    assert _denied(gw) - before <= 3
    assert github.seen[seen:] == []


def test_a_401_says_invalid_token_only_when_a_token_was_shown(gw: Kontext) -> None:
    """RFC 6750 §3.1: a request with no token gets the challenge without an error
    code; a bad token gets ``error="invalid_token"``."""
    with gw.http() as http:
        none = http.get(f"{PULLS}/1")
        bad = http.get(f"{PULLS}/1", headers={"Authorization": "Bearer e30.e30.x"})
    assert none.status_code == bad.status_code == 401
    # RFC 9728 §5.1: both also say where the resource's metadata is.
    meta = f'resource_metadata="{gw.base_url}/.well-known/oauth-protected-resource/gw/github"'
    assert none.headers["WWW-Authenticate"] == f'Bearer realm="kontext", {meta}'
    assert bad.headers["WWW-Authenticate"] == (
        f'Bearer realm="kontext", error="invalid_token", {meta}'
    )
