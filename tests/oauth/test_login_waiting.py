"""Waiting for the browser: idle connections, the --timeout, Ctrl-C, and nobody there.

Each test runs the real ``kontext login`` / ``consent grant`` against a real
daemon; the browser is the ``$BROWSER`` stand-in (tests/browser_approve.py),
which can also open idle connections to the CLI's callback port first, as a
real browser's speculative pre-connects (or another local process) do.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess

from conftest import KONTEXT, Kontext, one_line_error, os_user, wait_until


def test_idle_connections_to_the_callback_do_not_block_login(fresh_kx: Kontext) -> None:
    # More idle connections than the listener keeps open at once: the oldest give way.
    fresh_kx.start()
    login = fresh_kx.ok(
        "login", env={"KX_IDLE_CONNECTIONS": "40", "KX_EMAIL": "alice@acme.com"}, tty=True
    )
    assert f"Logged in as {os_user()}" in login.stdout


def test_login_keeps_its_timeout_despite_an_idle_connection(fresh_kx: Kontext) -> None:
    # The person walks away; a connection to the callback port stays open and silent.
    fresh_kx.start()
    proc = fresh_kx.run(
        "login",
        "--timeout",
        "5",
        env={"KX_IDLE_CONNECTIONS": "2", "KX_ABANDON": "1"},
        tty=True,
        timeout=90,  # before the fix it never returned
    )
    assert proc.returncode == 14, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last == "kontext: login: no answer from the browser within 5s; nothing changed"
    assert "Logged in" not in proc.stdout


def _interrupt_while_waiting(k: Kontext, *args: str) -> tuple[int, str]:
    """Run ``kontext ARGS`` on a terminal (spinner and all), press Ctrl-C once the URL shows."""
    primary, secondary = pty.openpty()
    env = {**k.env}
    env.pop("NO_COLOR", None)  # the spinner runs on its own thread: the harder case
    proc = subprocess.Popen(
        [KONTEXT, *args],
        stdin=secondary,
        stderr=secondary,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    seen = b""  # our copy of ``secondary`` stays open: what it wrote stays readable

    def url_shown() -> bool:
        nonlocal seen
        if select.select([primary], [], [], 0.1)[0]:
            seen += os.read(primary, 65536)
        return b"/authorize?" in seen

    try:
        assert wait_until(url_shown, timeout=60), seen
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        while select.select([primary], [], [], 0.5)[0]:
            seen += os.read(primary, 65536)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
        os.close(secondary)
    return code, seen.decode(errors="replace")


def test_ctrl_c_cancels_login_and_consent_with_130(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    code, out = _interrupt_while_waiting(k, "login", "--no-browser")
    assert code == 130, out
    assert "kontext: login cancelled (Ctrl-C); nothing changed" in out
    assert "no answer from the browser" not in out
    agent = k.agent("github:pulls:read", consent=False)
    code, out = _interrupt_while_waiting(
        k, "consent", "grant", agent, "--scope", "github:pulls:read", "--no-browser"
    )
    assert code == 130, out
    assert f"kontext: consent for agent:{agent} cancelled (Ctrl-C); nothing changed" in out
    assert f"agent:{agent}" not in k.ok("consent", "list").stdout


def test_without_a_person_login_and_consent_fail_at_once(fresh_kx: Kontext) -> None:
    # A home of its own: where the local account already holds grants (the shared
    # daemon, after other tests), 'login' first says so and stops (exit 4) — the
    # order a person needs, tested in tests/oauth/test_sessions.py.
    kx = fresh_kx
    kx.start()
    agent = kx.agent("github:pulls:read", consent=False)
    grant = ("consent", "grant", f"agent:{agent}", "--scope", "github:pulls:read")
    for env, tty, why in (
        ({}, False, "there is no terminal (stdin is not a TTY)"),
        ({"CI": "true"}, True, "this is CI (CI=true)"),
    ):
        line = one_line_error(kx.run("login", env=env, tty=tty, timeout=30), 14)
        assert line == (
            f"kontext: login needs you in a browser, but {why}: log in beforehand at a "
            "terminal, or pass --no-browser to print the URL and wait for it"
        )
        line = one_line_error(kx.run(*grant, env=env, tty=tty, timeout=30), 14)
        assert f"consent for agent:{agent} needs you in a browser, but {why}" in line
        assert f"'kontext consent grant agent:{agent} --scope github:pulls:read'" in line
    assert f"agent:{agent}" not in kx.ok("consent", "list").stdout
