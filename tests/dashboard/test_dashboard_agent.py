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

import pytest

from tests.conftest import KONTEXT, Kontext, api_audit, api_new_agent

ATTEMPT = r"""
import json, os, socket, subprocess, sys
home, kontext = sys.argv[1], sys.argv[2]
got = {}
cli = subprocess.run([kontext, "dashboard", "--no-browser"], capture_output=True, text=True,
                     env={**os.environ, "KONTEXT_HOME": home, "BROWSER": "true"})
got["cli"] = [cli.returncode, cli.stdout + cli.stderr]
try:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.path.join(home, "run", "control.sock"))
    sock.sendall(b"POST /v1/dashboard/link HTTP/1.1\r\nHost: kontextd\r\nContent-Length: 0\r\n\r\n")
    got["raw"] = sock.recv(65536).decode(errors="replace")
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
