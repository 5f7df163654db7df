"""An agent cannot open the dashboard (attacker 3 of SECURITY.md, at the dashboard).

From inside ``kontext exec`` — confined (the default) or with ``--no-confine`` — it
asks for a one-time link the way the user would (``kontext dashboard``) and straight
on the control socket. Confined, it cannot even see the socket; unconfined, the
daemon knows the caller is inside an agent's tree from kernel facts and refuses
everything but its own lease. Either way no link is made.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import KONTEXT, Kontext, api_agent, api_audit, api_new_agent
from tests.dashboard.harness import open_session

ATTEMPT = r"""
import json, os, re, socket, subprocess, sys
home, kontext = sys.argv[1], sys.argv[2]
got = {}
cli = subprocess.run([kontext, "dashboard", "--no-browser"], capture_output=True, text=True,
                     env={**os.environ, "KONTEXT_HOME": home, "BROWSER": "true"})
got["cli"] = [cli.returncode, cli.stdout + cli.stderr]
try:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.path.join(home, "run", "control.sock"))
    sock.settimeout(30)
    sock.sendall(b"POST /v1/dashboard/link HTTP/1.1\r\nHost: kontextd\r\nContent-Length: 0\r\n"
                 b"Connection: close\r\n\r\n")
    raw = b""
    while True:  # the head and the body may come in more than one read
        head, _, body = raw.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if _ and length and len(body) >= int(length.group(1)):
            break
        part = sock.recv(65536)
        if not part:
            break
        raw += part
    got["raw"] = raw.decode(errors="replace")
except OSError as exc:
    got["raw"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(got))
"""


@pytest.mark.parametrize("confine", ["default", "--no-confine"])
def test_an_agent_cannot_get_a_dashboard_link(kx: Kontext, confine: str) -> None:
    agent = api_new_agent(kx, "github:pulls:read", prefix="nolink")
    extra = [] if confine == "default" else [confine]
    ran = kx.run(
        "exec", "--agent", agent, *extra, "--",
        sys.executable, "-c", ATTEMPT, str(kx.home), KONTEXT,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "/dashboard/open" not in ran.stdout
    got = json.loads(ran.stdout)
    assert got["cli"][0] != 0, got
    raw = got["raw"]
    assert raw.startswith(("FileNotFoundError", "PermissionError")) or " 403 " in raw, raw
    if " 403 " in raw:  # unconfined: the daemon refused it as the agent it is, and audited it
        assert f"agent:{agent}" in raw
        refused = [e for e in api_audit(kx, agent) if e["event"] == "control.refused"]
        assert any("/v1/dashboard/link" in e["route"] for e in refused)


# -- the link in the browser's argv ----------------------------------------------------

SNOOP = r"""
import json, os, sys, time, urllib.error, urllib.request
flag = sys.argv[1]
print("ready", flush=True)
found, deadline = None, time.monotonic() + 120
while found is None and time.monotonic() < deadline:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        found = next((a.decode() for a in argv if b"/dashboard/open?t=" in a), None)
        if found:
            break

class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

try:
    with urllib.request.build_opener(Stay).open(found, timeout=30) as answer:
        got = [answer.status, answer.headers.get("Set-Cookie"), ""]
except urllib.error.HTTPError as exc:
    got = [exc.code, exc.headers.get("Set-Cookie"), exc.read().decode()]
print(json.dumps(got), flush=True)
open(flag, "w").close()
"""

SLOW_BROWSER = r"""
import os, sys, time, urllib.error, urllib.request
url, flag, result = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.monotonic() + 120
while not os.path.exists(flag) and time.monotonic() < deadline:
    time.sleep(0.05)  # a browser still starting: the agent has all the time it needs

class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

try:
    with urllib.request.build_opener(Stay).open(url, timeout=30) as answer:
        status = answer.status
except urllib.error.HTTPError as exc:
    status = exc.code
with open(result, "w") as fh:
    fh.write(str(status))
"""


@pytest.mark.parametrize("confine", ["default", "--no-confine"])
def test_an_agent_that_reads_the_link_from_the_browsers_argv_cannot_use_it(
    kx: Kontext, confine: str, tmp_path: Path
) -> None:
    """The link is in the browser's command line, which any process of the user can
    read in /proc. An agent watching for it and racing the browser is refused (the
    daemon finds the connection's socket held inside the agent's tree), and the link
    is not spent: the user's browser still opens the dashboard."""
    agent = api_new_agent(kx, "github:pulls:read", prefix="snoop")
    flag, result = tmp_path / "agent-tried", tmp_path / "browser-status"
    (tmp_path / "snoop.py").write_text(SNOOP)
    (tmp_path / "slow_browser.py").write_text(SLOW_BROWSER)
    browser = tmp_path / "browser"
    browser.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "slow_browser.py"}" "$1" '
        f'"{flag}" "{result}"\n'
    )
    browser.chmod(0o700)
    extra = [] if confine == "default" else [confine]
    snoop = kx.popen(
        "exec", "--agent", agent, *extra, "--", sys.executable, str(tmp_path / "snoop.py"),
        str(flag),
    )  # fmt: skip
    try:
        assert snoop.stdout is not None
        assert snoop.stdout.readline().strip() == "ready"
        kx.ok("dashboard", env={"BROWSER": str(browser)}, timeout=180)
        status, cookie, body = json.loads(snoop.stdout.readline())
    finally:
        Kontext.close(snoop)
    assert status == 403 and cookie is None, (status, body)
    assert f"agent:{agent}" in body
    assert result.read_text() == "303"  # the user's browser got in: the link was not spent
    refused = [e for e in api_audit(kx, agent) if e["event"] == "dashboard.refused"]
    assert refused and refused[0]["path"] == "/dashboard/open"


STOLEN = r"""
import ctypes, json, sys, urllib.error, urllib.request
base, cookie, csrf, victim, hide = sys.argv[1:6]
if hide == "hide":  # PR_SET_DUMPABLE 0: /proc/PID/fd is closed to kontextd
    assert ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) == 0
got = {}
for path, body in (("/dashboard/", None), ("/dashboard/api/credentials", None),
                   ("/dashboard/api/revoke-agent", {"agent": victim, "kill": True})):
    headers = {"Cookie": cookie, "X-Kontext-CSRF": csrf, "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            got[path] = [answer.status, answer.read().decode()]
    except urllib.error.HTTPError as exc:
        got[path] = [exc.code, exc.read().decode()]
print(json.dumps(got))
"""


@pytest.mark.parametrize("hide", ["dumpable", "hide"])
def test_an_agent_with_a_stolen_session_cookie_reads_and_changes_nothing(
    kx: Kontext, hide: str
) -> None:
    """The session cookie rests in the browser's profile, readable by the user's
    processes. An agent holding it (and the page's CSRF token) gets no page, no data
    and no action, even when it makes itself not dumpable to hide its open files."""
    session = open_session(kx)
    victim = api_new_agent(kx, "github:pulls:read", prefix="victim")
    thief = api_new_agent(kx, "github:pulls:read", prefix="thief")
    ran = kx.run(
        "exec", "--agent", thief, "--", sys.executable, "-c", STOLEN,
        kx.base_url, session.cookie, session.csrf, f"agent:{victim}", hide,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    got = json.loads(ran.stdout)
    for path, (status, body) in got.items():
        assert status == 403, (path, status, body[:300])
        assert f"agent:{thief}" in body and "kontext-csrf" not in body, path
    assert api_agent(kx, victim)["disabled"] is False
    assert not any(e["event"] == "agent.revoked" for e in api_audit(kx, victim))
    assert session.get("/dashboard/api/overview").status_code == 200  # still the user's
