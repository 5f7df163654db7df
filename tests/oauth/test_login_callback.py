"""The CLI's one-shot loopback redirect server and PKCE session, on their own."""

from __future__ import annotations

import base64
import hashlib
import threading

import httpx
import pytest

from kontext_cli.login.callback import CallbackServer
from kontext_cli.login.pkce import PkceSession, StateMismatch

ISSUER = "http://127.0.0.1:1234"
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_pkce_session_is_s256_single_use_and_redacted() -> None:
    session = PkceSession()
    verifier = session.take_verifier()
    digest = hashlib.sha256(verifier.encode()).digest()
    assert session.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert 43 <= len(verifier) <= 128
    with pytest.raises(RuntimeError):
        session.take_verifier()
    assert verifier not in repr(session) and session.state not in repr(session)
    with pytest.raises(StateMismatch):
        session.check_state("forged")


def test_only_the_callback_path_answers_and_forgeries_are_ignored() -> None:
    session = PkceSession()
    with CallbackServer(session, ISSUER) as server:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert server.path.startswith("/callback/") and len(server.path) > 25
        with httpx.Client(base_url=base) as http:
            assert http.get("/").status_code == 404
            assert http.get("/callback").status_code == 404
            good = {"code": "c-1", "state": session.state, "iss": ISSUER}
            # Wrong state, wrong iss, missing iss: ignored, the login keeps waiting.
            for forged in (
                {**good, "state": "nope"},
                {**good, "iss": "http://127.0.0.1:9999"},
                {"code": "c-1", "state": session.state},
            ):
                assert http.get(server.path, params=forged).status_code == 400
                assert not server.done.is_set()
            assert http.get(server.path, params=good).status_code == 200
            # One shot: later callbacks change nothing.
            assert http.get(server.path, params={**good, "code": "c-2"}).status_code == 400
        result = server.wait(1)
    assert result is not None and result.code == "c-1" and "c-1" not in repr(result)


def test_the_browser_gets_the_whole_done_page_although_the_cli_leaves_at_once() -> None:
    """The CLI leaves its ``with`` block (hanging up open connections) as soon as it
    has the callback; the browser must still get the whole page, not a cut-off body
    (Chromium showed ERR_CONTENT_LENGTH_MISMATCH instead of "Done" in CI)."""
    for _ in range(10):
        session = PkceSession()
        server = CallbackServer(session, ISSUER)
        got: list[object] = []
        cli = threading.Thread(target=lambda s=server, g=got: g.append(_login_side(s)))
        cli.start()
        port = server.server_address[1]
        params = {"code": "c-1", "state": session.state, "iss": ISSUER}
        answer = httpx.get(f"http://127.0.0.1:{port}{server.path}", params=params, timeout=30)
        cli.join(30)
        assert answer.status_code == 200 and "Done" in answer.text
        assert got and got[0] == "c-1"


def _login_side(server: CallbackServer) -> str | None:
    with server:
        result = server.wait(30)
    return None if result is None else result.code


def test_waiting_times_out_without_a_callback() -> None:
    with CallbackServer(PkceSession(), None) as server:
        done = threading.Event()
        assert server.wait(0.2) is None
        done.set()


STRANGER_CALLBACK = """
import socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    try:
        s.sendall(b"GET %s HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n" % path.encode())
        print(repr(s.recv(1000)))
    except ConnectionResetError:
        print(repr(b""))
"""


@pytest.mark.parametrize("listener", ["login", "integration"])
def test_another_uid_cannot_answer_the_callback(listener: str) -> None:
    """The authorize URL names the callback (it is in the browser's argv): another
    OS user who sends the redirect first is hung up on, and the login waits on."""
    import os
    import subprocess
    import sys
    import urllib.parse

    from kontext_cli.login.callback import ProviderRedirect

    if os.getuid() != 0:
        pytest.skip("switching to another uid needs root (setpriv)")
    session = PkceSession()
    server: CallbackServer | ProviderRedirect
    if listener == "login":
        server = CallbackServer(session, ISSUER)
        path = (
            server.path
            + "?"
            + urllib.parse.urlencode({"code": "stolen", "state": session.state, "iss": ISSUER})
        )
        port = server.server_address[1]
    else:
        server = ProviderRedirect()
        path, port = server.path + "?code=stolen&state=x", server.server_address[1]
    with server:
        proc = subprocess.run(
            [*AS_NOBODY, sys.executable, "-I", "-c", STRANGER_CALLBACK, str(port), path],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "b''"  # closed without an answer
        assert server.wait(0.2) is None  # nothing was taken
