"""Accessibility: axe-core (npm, tests/dashboard/package.json) on every page, and a narrow
window where nothing needs sideways scrolling.

axe-core runs inside Chromium against the real pages with real data. Its script is
injected by the test, so this browser context bypasses the page's CSP (which would
rightly refuse an injected script); every other dashboard test runs under the CSP.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kontext, api_new_agent, gateway_daemon
from tests.dashboard.harness import ARGS, CHROMIUM, HERE, Agent, link
from tests.upstream.fake_github import API_KEY, FakeGitHub

AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
SECTIONS = ("", "credentials", "grants", "activity", "integrations", "policy")
SERIOUS = ("serious", "critical")

pytest.importorskip("playwright")
pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason="Debian chromium is not installed (.ci/run installs it)",
    ),
    pytest.mark.skipif(
        not AXE.exists(), reason="axe-core is not installed: run 'npm ci' in tests/dashboard"
    ),
]


@pytest.fixture(scope="module")
def populated() -> Iterator[Kontext]:
    """A daemon with agents, grants, a running exec and some gateway traffic."""
    with FakeGitHub() as github, gateway_daemon(github.url, API_KEY) as k:
        name = api_new_agent(k, "github:pulls:read", "github:pulls:write", prefix="a11y")
        api_new_agent(k, "github:issues:read", prefix="a11y-idle")
        k.run("exec", "--agent", name, "--scope", "github:issues:write", "--", "true")
        with Agent(k, name) as agent:
            agent.call()
            yield k


@pytest.fixture(scope="module")
def context(populated: Kontext) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = chromium.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        page = ctx.new_page()
        page.goto(link(populated))
        page.wait_for_selector("h1:text('Overview')")
        page.close()
        yield ctx
        chromium.close()


def violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(content=AXE.read_text())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.map(n => n.target.join(" "))}))"""
    )
    print("AXE", found)
    return [v for v in found if v["impact"] in SERIOUS]


def show(ctx: Any, k: Kontext, section: str, width: int = 1280) -> Any:
    page = ctx.new_page()
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(f"{k.base_url}/dashboard/{section}")
    page.wait_for_selector("#content[aria-busy='false']")
    page.wait_for_timeout(300)  # the stream's first batch
    return page


@pytest.mark.parametrize("section", SECTIONS)
def test_no_serious_accessibility_violation(populated: Kontext, context: Any, section: str) -> None:
    page = show(context, populated, section)
    if section == "activity":
        page.locator("ol.events summary").first.click()  # an opened event, too
    assert violations(page) == []
    page.close()


def test_the_confirmation_dialog_and_the_no_session_page_are_accessible(
    populated: Kontext, context: Any
) -> None:
    page = show(context, populated, "credentials")
    page.locator("button:text('Revoke agent')").first.click()
    page.locator("dialog#confirm").wait_for(state="visible")
    assert page.evaluate("document.activeElement.closest('dialog') !== null")  # focus inside
    assert violations(page) == []
    page.keyboard.press("Escape")  # closes without acting
    page.locator("dialog#confirm").wait_for(state="hidden")
    page.close()
    stranger = context.browser.new_context(bypass_csp=True).new_page()
    stranger.goto(f"{populated.base_url}/dashboard/")
    assert violations(stranger) == []
    stranger.context.close()


@pytest.mark.parametrize("section", SECTIONS)
def test_a_narrow_window_needs_no_sideways_scrolling(
    populated: Kontext, context: Any, section: str, tmp_path: Path
) -> None:
    page = show(context, populated, section, width=390)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.screenshot(path=str(tmp_path / f"narrow-{section or 'overview'}.png"), full_page=True)
    assert overflow <= 0, f"{overflow}px wider than a 390px window"
    page.close()
