"""``kontext login``/``whoami``/``logout`` and ``consent`` end to end, with ``$BROWSER``
pointing at a script that answers the pages over HTTP like a person would."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from conftest import KONTEXT, Kontext, api_audit, one_line_error, os_user


def test_login_whoami_logout_with_the_embedded_issuer(fresh_kx: Kontext) -> None:
    k = fresh_kx
    me = os_user()
    # The embedded issuer signs in the OS account from the password database:
    # neither what a page-filler types nor the daemon's $USER/$LOGNAME changes it.
    names = {"USER": "alice", "LOGNAME": "alice"}
    k.ok("daemon", "start", env=names)
    login = k.ok("login", env={"KX_EMAIL": "alice@acme.com", "KX_NAME": "Alice", **names}, tty=True)
    assert f"Logged in as {me}" in login.stdout
    assert "/authorize?client_id=kontext&request_uri=" in login.stderr  # the URL is printed
    who = k.ok("whoami").stdout
    assert me in who and k.base_url in who and "expires:" in who
    agent = k.agent("github:pulls:read")
    proc, child = k.token_for(agent)
    try:
        assert k.introspect(child["KONTEXT_TOKEN"])["sub"] == me
        out = k.ok("logout").stdout
        assert f"Logged out {me}" in out
        assert not k.introspect(child["KONTEXT_TOKEN"])["active"]
    finally:
        k.close(proc)
    assert "local account" in k.ok("whoami").stdout
    assert k.ok("consent", "list").stdout.count("agent:") == 0
    events = [e["event"] for e in api_audit(k, n=200)]
    assert "session.started" in events and "session.ended" in events
    secret = (k.runtime / "oauth-client-secret").read_text()
    assert secret not in k.log_file.read_text()


def test_login_denied_in_the_browser_is_one_line(fresh_kx: Kontext) -> None:
    fresh_kx.start()
    proc = fresh_kx.run("login", env={"KX_DECISION": "deny"}, tty=True)
    assert proc.returncode == 8
    assert "login was not completed (access_denied)" in proc.stderr


def test_consent_grant_list_revoke(kx: Kontext) -> None:
    agent = kx.agent("github:pulls:read", "github:pulls:write", consent=False)
    log = kx.home / f"browser-{agent}.log"
    kx.ok(
        "consent",
        "grant",
        f"agent:{agent}",
        "--scope",
        "github:pulls:read",
        "--target",
        "acme-corp/backend",
        env={"KX_BROWSER_LOG": str(log)},
        tty=True,
    )
    assert "200 /authorize" in log.read_text()
    listed = kx.ok("consent", "list").stdout
    assert f"agent:{agent}" in listed and "acme-corp/backend" in listed
    ok = kx.run(
        "exec",
        "--agent",
        agent,
        "--scope",
        "github:pulls:read",
        "--target",
        "acme-corp/backend",
        "--",
        "true",
    )
    assert ok.returncode == 0, ok.stderr
    other = kx.run("exec", "--agent", agent, "--scope", "github:pulls:read", "--", "true")
    assert other.returncode == 122  # the grant is for acme-corp/backend only
    assert "revoked 1 grant" in kx.ok("consent", "revoke", f"agent:{agent}").stdout
    again = kx.run(
        "exec",
        "--agent",
        agent,
        "--scope",
        "github:pulls:read",
        "--target",
        "acme-corp/backend",
        "--",
        "true",
    )
    assert again.returncode == 122


def test_non_interactive_exec_fails_fast_with_the_grant_command(kx: Kontext) -> None:
    agent = kx.agent("github:pulls:read", "github:pulls:write", consent=False)
    for env in ({}, {"CI": "true"}):
        proc = kx.run(
            "exec",
            "--agent",
            agent,
            "--target",
            "acme-corp/backend",
            "--",
            "true",
            env=env,
            timeout=20,
        )
        line = one_line_error(proc, 122)
        assert line.endswith(
            f"kontext consent grant agent:{agent} --scope github:pulls:read "
            "--scope github:pulls:write --target acme-corp/backend"
        ), line
        assert "denied by user consent" in line


def test_interactive_exec_asks_for_consent_once(kx: Kontext) -> None:
    agent = kx.agent("github:pulls:read", consent=False)
    log = kx.home / f"browser-{agent}.log"

    def run_on_tty() -> int:
        primary, secondary = pty.openpty()
        try:
            proc = subprocess.run(
                [KONTEXT, "exec", "--agent", agent, "--", sys.executable, "-c", "pass"],
                stdin=secondary,
                capture_output=True,
                text=True,
                timeout=60,
                env={**kx.env, "KX_BROWSER_LOG": str(log), "CI": ""},
            )
        finally:
            os.close(primary)
            os.close(secondary)
        assert proc.returncode == 0, proc.stderr
        return log.read_text().count("/authorize") if log.exists() else 0

    assert run_on_tty() == 1  # asked once, in the browser ...
    assert run_on_tty() == 1  # ... and not again: the grant holds for the session


def test_consent_grant_bad_input_is_one_line(kx: Kontext) -> None:
    one_line_error(kx.run("consent", "grant", "agent:x", "--scope", "nocolon"), 2)
    one_line_error(kx.run("consent", "grant", "agent:x", "--scope", "a:b", "--for", "90d"), 2)
    agent = kx.agent("github:pulls:read", consent=False)
    proc = kx.run("consent", "grant", f"agent:{agent}", "--scope", "github:issues:write", tty=True)
    assert proc.returncode == 14 and "agent permissions" in proc.stderr
