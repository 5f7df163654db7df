"""Terminal escapes planted in the audit log by another OS user come out escaped.

Another user on the machine needs no token to get text into the log: a refused
gateway call is an ``api.denied`` event carrying the request's path. Here user
``nobody`` (``setpriv``) sends raw request lines whose paths hold ESC [ 2J
(clear screen), OSC 52 (write the clipboard), a C1 CSI (0x9b) and U+202E (bidi
override) to the loopback port; ``kontext audit tail`` then runs to a pipe and to
a pseudo-terminal, through the fast path and the typer path. No raw control byte
may reach either, and the events must still be readable (escaped, not dropped).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

import pytest
from conftest import Kontext
from test_audit_fast import append, on_a_terminal

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SYSTEM_PYTHON = "/usr/bin/python3"  # ours lives under /root, which nobody cannot enter
PAYLOADS = [
    b"/gw/github/repos/a/\x1b[2J\x1b[31mX",
    b"/gw/github/\x1b]52;c;ZXZpbA==\x07",
    b"/gw/github/\x9b31mY",
    "/gw/github/\u202eZ".encode(),
]
# What must never reach the reader: ESC, BEL, C1 as a byte or as UTF-8, U+202E.
RAW = [b"\x1b", b"\x07", b"\x9b", "\u009b".encode(), "\u202e".encode()]
SENDER = textwrap.dedent(
    """
    import socket, sys
    port = int(sys.argv[1])
    for path in sys.argv[2:]:
        target = bytes.fromhex(path)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET " + target + b" HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\n"
                      b"Connection: close\\r\\n\\r\\n" % port)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        print(out.split(b"\\r\\n", 1)[0].decode())
    """
)


def _as_nobody(k: Kontext) -> list[str]:
    if os.getuid() != 0 or shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs root, setpriv and /usr/bin/python3 to act as another user")
    argv = [*NOBODY, SYSTEM_PYTHON, "-c", SENDER, str(k.port), *(p.hex() for p in PAYLOADS)]
    sent = subprocess.run(argv, check=True, timeout=60, capture_output=True, text=True, cwd="/")
    return sent.stdout.splitlines()


def _clean(out: bytes) -> None:
    for raw in RAW:
        assert raw not in out, (raw, out[-2000:])


@pytest.mark.parametrize("args", [["-n", "20"], ["-n20"]], ids=["fast path", "typer path"])
def test_escapes_from_another_uid_are_escaped_on_a_pipe_and_a_pty(
    fresh_kx: Kontext, args: list[str]
) -> None:
    fresh_kx.start()
    # llhttp refuses control bytes in a request target (RFC 9112 §3.2): each payload
    # is answered 400 before any route, so none of it reaches the audit log at all.
    assert _as_nobody(fresh_kx) == ["HTTP/1.1 400 Bad Request"] * len(PAYLOADS)
    stored = fresh_kx.ok("audit", "tail", "--json").stdout.encode()
    _clean(stored)
    piped = fresh_kx.ok("audit", "tail", *args).stdout.encode()
    on_pty = on_a_terminal(fresh_kx, "audit", "tail", *args)
    for out in (piped, on_pty):
        _clean(out)
    # Coloured on a terminal too: our own colour codes only, around the event name.
    coloured = on_a_terminal(fresh_kx, "audit", "tail", *args, env={"NO_COLOR": ""})
    _clean(coloured.replace(b"\x1b[", b"<CSI>"))


def test_every_kind_of_control_is_escaped_in_every_field(fresh_kx: Kontext) -> None:
    """The same characters in each field a line shows, written into the log directly."""
    nasty = "\x1b[2J\x1b]52;c;eA==\x07\x9b1m\u202e\u2066\x7f\u200b\u2028"
    fresh_kx.start()
    fresh_kx.stop()
    fields = ["reason", "path", "method", "integration", "target", "kid", "storage", "issuer"]
    events: list[dict[str, object]] = [
        {"event": name, "agent": {"id": nasty}, "user": {"id": nasty}}
        | {f: nasty for f in fields}
        | {"scopes": [nasty], "status": nasty, "session_user": nasty, "client_id": nasty}
        for name in ("credential.denied", "api.denied", "key.created", "session.ended")
    ] + [{"event": nasty, "reason": nasty}]
    append(fresh_kx, events)
    for args in (["-n", "30"], ["-n30"]):
        piped = fresh_kx.ok("audit", "tail", *args).stdout.encode()
        _clean(piped)
        for raw in ("\x7f", "\u200b", "\u2028", "\u2066"):
            assert raw.encode() not in piped
        assert piped.count(b"\\u202e") >= 4 * 3 + 1
