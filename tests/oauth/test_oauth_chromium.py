"""Login and consent end to end in a real headless Chromium (Debian ``chromium``),
driven by Playwright with the system browser — never a downloaded one."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Kontext, os_user

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]

pytest.importorskip("playwright")
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def new_page(browser: object) -> Any:
    """A page that waits as long as a loaded 2-core CI box may need (Playwright's 30 s
    default is a speed assumption: the wait is for the daemon and the CLI, not us)."""
    page = browser.new_page()  # type: ignore[attr-defined]
    page.set_default_timeout(120_000)
    return page


def url_from(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    for _ in range(20):
        line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/authorize\?\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("no URL printed")


def end(proc: subprocess.Popen[str]) -> None:
    """Kill the CLI if it still runs, reap it and close its pipes, whether or not it
    already exited (pipes left open surface as a ResourceWarning in a later test)."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def test_login_in_chromium(fresh_kx: Kontext, browser: object) -> None:
    k = fresh_kx
    k.start()
    proc = k.popen("login", "--no-browser", "--timeout", "300")
    page = new_page(browser)
    try:
        page.goto(url_from(proc))
        assert page.locator("h1").inner_text() == "Sign in to kontext"
        me = os_user()
        assert me.removeprefix("user:") in page.locator("body").inner_text()
        # Nothing to type: the page names the OS account. A form edited in the
        # browser to carry another identity signs in the OS account all the same.
        assert page.locator("input[type=text], input:not([type])").count() == 0
        page.evaluate(
            """() => { const f = document.querySelector('form');
              for (const [n, v] of [['email', 'mallory@acme.com'], ['name', 'Mallory']]) {
                const i = document.createElement('input');
                i.type = 'hidden'; i.name = n; i.value = v; f.appendChild(i); } }"""
        )
        page.click("button[value=approve]")
        page.wait_for_selector("text=Done")
        out, err = proc.communicate(timeout=120)
    finally:
        page.close()
        end(proc)
    assert proc.returncode == 0, err
    assert f"Logged in as {me}" in out
    assert me in k.ok("whoami").stdout and "mallory" not in k.ok("whoami").stdout


def test_consent_in_chromium_says_exactly_what_is_asked(kx: Kontext, browser: object) -> None:
    agent = kx.agent(
        "github:pulls:read",
        "github:pulls:write",
        extra=("--display-name", "PR Reviewer"),
        consent=False,
    )
    proc = kx.popen(
        "consent",
        "grant",
        f"agent:{agent}",
        "--scope",
        "github:pulls:read",
        "--scope",
        "github:pulls:write",
        "--target",
        "acme-corp/backend",
        "--no-browser",
    )
    page = new_page(browser)
    try:
        url = url_from(proc)
        page.goto(url)
        assert page.locator("h1").inner_text() == "PR Reviewer is requesting access:"
        body = page.inner_text("body")
        assert "Read pull requests" in body
        assert "Post review comments and update pull requests" in body
        assert "No org admin access" in body and "No access to: Read issues" in body
        assert "acme-corp/backend" in body
        assert "Expires in 1 hour" in body
        # Framed by another page, the consent page does not render (X-Frame-Options, CSP).
        framer = browser.new_page()  # type: ignore[attr-defined]
        framer.set_content(f'<iframe src="{url}" width="600" height="400"></iframe>')
        framer.wait_for_timeout(500)
        framed = [f for f in framer.frames if f != framer.main_frame]
        assert all(f.query_selector("button") is None for f in framed)
        framer.close()
        page.click("button[value=approve]")
        page.wait_for_selector("text=Done")
        out, err = proc.communicate(timeout=120)
    finally:
        page.close()
        end(proc)
    assert proc.returncode == 0, err
    assert f"for agent:{agent}" in out
    ran = kx.run("exec", "--agent", agent, "--target", "acme-corp/backend", "--", "true")
    assert ran.returncode == 0, ran.stderr


def test_deny_in_chromium_fails_the_grant(kx: Kontext, browser: object) -> None:
    agent = kx.agent("github:pulls:read", consent=False)
    proc = kx.popen(
        "consent", "grant", f"agent:{agent}", "--scope", "github:pulls:read", "--no-browser"
    )
    page = new_page(browser)
    try:
        page.goto(url_from(proc))
        page.click("button[value=deny]")
        page.wait_for_selector("text=Done")
        _, err = proc.communicate(timeout=120)
    finally:
        page.close()
        end(proc)
    assert proc.returncode == 8 and "was not given (access_denied)" in err
