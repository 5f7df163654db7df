"""The dashboard in a real headless Chromium (Debian ``chromium`` through Playwright, never
a downloaded browser), against a real daemon whose GitHub is the fake upstream.

What a user sees and does: open it from the one-time link (once), watch an agent's
exec count down, revoke an agent (its next gateway call is refused, others keep
running), revoke and kill, revoke a grant, watch the audit stream, see a tampered
log flagged, explain a request on the Policy page as the CLI does and see a broken
policy file named — with the keyboard alone where it matters, and without a console error
(a CSP violation is one).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kontext, api_audit, api_new_agent, gateway_daemon, wait_until
from tests.dashboard.harness import ARGS, CHROMIUM, Agent, link, open_session
from tests.dashboard.test_dashboard_stream import Events
from tests.upstream.fake_github import API_KEY, FakeGitHub

pytest.importorskip("playwright")
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (.ci/run installs it)"
)
WAIT = 30_000  # ms: generous, for a loaded two-core machine


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(github: FakeGitHub) -> Iterator[Kontext]:
    with gateway_daemon(github.url, API_KEY) as k:
        yield k


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Dashboard:
    """One browser context holding a dashboard session; records console errors."""

    def __init__(self, k: Kontext, browser: Any, **context: Any) -> None:
        self.k = k
        self.context = browser.new_context(viewport={"width": 1280, "height": 800}, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(link(k))
        self.page.wait_for_selector("h1:text('Overview')")

    def go(self, section: str) -> Any:
        self.page.goto(f"{self.k.base_url}/dashboard/{section}")
        self.page.wait_for_selector("#content[aria-busy='false']", timeout=WAIT)
        return self.page

    def confirm(self, expected: str) -> str:
        dialog = self.page.locator("dialog#confirm")
        dialog.wait_for(state="visible", timeout=WAIT)
        text = dialog.locator("#confirm-text").inner_text()
        assert expected in text, text
        self.page.click("#confirm-yes")
        return text

    def notice(self, expected: str) -> str:
        box = self.page.locator("#notice .notice")
        box.wait_for(timeout=WAIT)
        text = box.inner_text()
        assert expected in text, text
        return text

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def dash(gw: Kontext, browser: Any) -> Iterator[Dashboard]:
    board = Dashboard(gw, browser)
    yield board
    board.close()
    assert board.errors == []  # no CSP violation, no script error


def card_of(page: Any, agent: str) -> Any:
    return page.locator("section.card", has=page.locator(f"text=agent:{agent} ·"))


# -- getting in ----------------------------------------------------------------------


def test_the_link_opens_the_dashboard_once(gw: Kontext, browser: Any) -> None:
    url = link(gw)
    first = browser.new_context()
    page = first.new_page()
    page.goto(url)
    page.wait_for_selector("h1:text('Overview')")
    assert page.url == f"{gw.base_url}/dashboard/"
    cookies = first.cookies()
    assert [(c["httpOnly"], c["sameSite"], c["path"]) for c in cookies] == [
        (True, "Strict", "/dashboard")
    ]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
    second = browser.new_context().new_page()
    second.goto(url)
    assert second.locator("h1").inner_text() == "This link cannot be used"
    assert second.context.cookies() == []
    first.close()
    second.context.close()


# -- live credentials and revocation ---------------------------------------------------------


def test_revoke_agent_ends_its_credential_and_the_others_keep_running(
    gw: Kontext, dash: Dashboard
) -> None:
    victim = api_new_agent(gw, "github:pulls:read", prefix="victim")
    other = api_new_agent(gw, "github:pulls:read", prefix="bystander")
    with Agent(gw, victim) as target, Agent(gw, other) as bystander:
        assert target.call() == 200 and bystander.call() == 200
        page = dash.go("credentials")
        card = card_of(page, victim)
        card.wait_for(timeout=WAIT)
        row = card.locator("tbody tr")
        assert "agent_child.py" in row.inner_text()  # the process's command line
        countdown = row.locator(".countdown")
        first = countdown.inner_text()
        assert re.fullmatch(r"in \d+m \d\ds", first), first
        page.wait_for_function(  # it counts down without a reload
            "([el, t]) => el.textContent !== t",
            arg=[countdown.element_handle(), first],
            timeout=WAIT,
        )
        card.locator("button:text('Revoke agent')").first.click()
        text = dash.confirm(
            f"agent:{victim}: 1 live credential, 1 process; other agents keep running"
        )
        assert "every call they make is refused" in text
        dash.notice(f"Revoked agent:{victim}: 1 live credential ended")
        assert target.call() == 403  # the fake GitHub is never reached with it
        assert gw.introspect(target.env["KONTEXT_TOKEN"]) == {"active": False}
        assert bystander.call() == 200
        assert gw.introspect(bystander.env["KONTEXT_TOKEN"])["active"] is True
        card.wait_for(state="detached", timeout=WAIT)
        assert card_of(page, other).is_visible()
    revoked = [e for e in api_audit(gw, victim) if e["event"] == "agent.revoked"]
    assert revoked[-1]["via"] == "dashboard"


def test_revoke_agent_and_kill_stops_its_process(gw: Kontext, dash: Dashboard) -> None:
    name = api_new_agent(gw, "github:pulls:read", prefix="runaway")
    with Agent(gw, name) as runaway:
        page = dash.go("credentials")
        card = card_of(page, name)
        card.wait_for(timeout=WAIT)
        card.locator("button:text('Revoke agent and kill its processes')").click()
        dash.confirm("its processes are stopped")
        dash.notice("1 process stopped")
        runaway.proc.wait(timeout=30)
        assert runaway.proc.returncode != 0
    killed = [e for e in api_audit(gw, name) if e["event"] == "process.killed"]
    assert killed and killed[-1]["via"] == "dashboard"


def test_revoke_one_credential_with_the_keyboard_alone(gw: Kontext, dash: Dashboard) -> None:
    name = api_new_agent(gw, "github:pulls:read", prefix="keys")
    with Agent(gw, name) as agent:
        page = dash.go("credentials")
        button = card_of(page, name).locator("button:text('Revoke credential')")
        button.wait_for(timeout=WAIT)
        label = button.get_attribute("aria-label")
        for _ in range(60):  # Tab through the page until the button has focus
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.getAttribute('aria-label')") == label:
                break
        else:
            raise AssertionError("the Revoke credential button is not reachable with Tab")
        page.keyboard.press("Enter")
        page.locator("dialog#confirm").wait_for(state="visible", timeout=WAIT)
        assert page.evaluate("document.activeElement.textContent") == "Cancel"  # the safe one
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "confirm-yes"
        page.keyboard.press("Enter")
        dash.notice("Revoked credential")
        # The row is gone with the credential: focus moves to the result, read out.
        assert "Revoked credential" in page.evaluate("document.activeElement.textContent")
        assert agent.call() == 403
    with Agent(gw, name) as again:  # the agent itself was not revoked
        assert again.call() == 200


def test_a_grant_revoked_from_the_page_stops_the_next_exec(gw: Kontext, dash: Dashboard) -> None:
    name = api_new_agent(gw, "github:pulls:read", prefix="granted")
    assert gw.run("exec", "--agent", name, "--", "true").returncode == 0
    page = dash.go("grants")
    card = card_of(page, name)
    card.wait_for(timeout=WAIT)
    assert "Read pull requests" in card.inner_text()  # the consent page's words
    card.locator("button:text('Revoke grant')").click()
    dash.confirm(f"agent:{name} loses your approval of: Read pull requests")
    dash.notice(f"Revoked the grant to agent:{name}")
    refused = gw.run("exec", "--agent", name, "--", "true")
    assert refused.returncode == 122 and "has not approved" in refused.stderr


# -- activity --------------------------------------------------------------------------


def test_activity_streams_a_new_credential_issued_without_reloading(
    gw: Kontext, dash: Dashboard
) -> None:
    name = api_new_agent(gw, "github:pulls:read", prefix="streamed")
    page = dash.go("activity")
    page.locator(".live:not(.off)").wait_for(timeout=WAIT)
    page.evaluate("window.notReloaded = true")
    assert gw.run("exec", "--agent", name, "--", "true").returncode == 0
    line = page.locator(
        "ol.events > li", has=page.locator(".name:text('credential.issued')")
    ).filter(has_text=f"agent:{name}")
    line.wait_for(timeout=WAIT)
    assert page.evaluate("window.notReloaded") is True
    line.locator("summary").click()  # open it: the full event and each layer's verdict
    body = line.locator(".event-body").inner_text()
    for layer in ("Org policy", "User consent", "Agent permissions"):
        assert layer in body
    assert '"policy_evaluation"' in body and '"jti"' in body


def test_activity_under_a_flood_shows_what_the_stream_sent_and_counts_the_rest(
    gw: Kontext, dash: Dashboard
) -> None:
    """The page and a plain stream with the same filter get the same batches: the page
    shows each event sent live as a line and each ``skipped`` count as one line saying
    how many (and which ids) were not shown. Whether the flood overflows a batch
    depends on the machine's speed; what the page shows matches the stream either way."""
    name = api_new_agent(gw, "github:pulls:read", prefix="flooded")
    total = 8 * 30
    query = f"agent={name}&event=credential.issued"
    page = dash.go(f"activity?{query}")
    page.locator(".live:not(.off)").wait_for(timeout=WAIT)
    watch = Events(open_session(gw), f"history=0&{query}")

    def issue(count: int) -> None:
        with gw.control() as api:
            for _ in range(count):
                assert api.post("/v1/credentials", json={"agent": name}).status_code == 201

    try:
        workers = [threading.Thread(target=issue, args=(total // 8,)) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        def sent() -> int:
            return sum(
                1 if kind == "audit" else json.loads(data)["count"]
                for _, kind, data in list(watch.frames)
                if kind in ("audit", "skipped")
            )

        assert wait_until(lambda: sent() >= total, timeout=60)
    finally:
        watch.close()
    frames = list(watch.frames)
    shown = [int(json.loads(d)["event"]["id"]) for _, k, d in frames if k == "audit"]
    skipped = [json.loads(d) for _, k, d in frames if k == "skipped"]

    def on_page() -> tuple[list[int], list[tuple[int, int, int]]]:
        ids = page.eval_on_selector_all(
            "ol.events > li[data-id]", "ls => ls.map(l => l.dataset.id)"
        )
        counts = page.eval_on_selector_all(
            "ol.events > li.skipped",
            "ls => ls.map(l => [parseInt(l.innerText), +l.dataset.first, +l.dataset.last])",
        )
        return sorted(int(i) for i in ids), sorted(tuple(c) for c in counts)

    expected = (sorted(shown), sorted((s["count"], s["first"], s["last"]) for s in skipped))
    assert wait_until(lambda: on_page() == expected, timeout=60), (on_page(), expected)


def test_activity_filters_by_agent_event_and_outcome(gw: Kontext, dash: Dashboard) -> None:
    name = api_new_agent(gw, "github:pulls:read", prefix="filtered")
    gw.run("exec", "--agent", name, "--scope", "github:issues:write", "--", "true")  # denied
    page = dash.go(f"activity?agent={name}&outcome=denied")
    page.locator(".live:not(.off)").wait_for(timeout=WAIT)
    lines = page.locator("ol.events > li")
    lines.first.wait_for(timeout=WAIT)
    texts = lines.all_inner_texts()
    assert texts and all(f"agent:{name}" in t and "denied" in t for t in texts), texts
    assert page.locator("select[name=outcome]").input_value() == "denied"


# -- attacks --------------------------------------------------------------------------


def test_a_tampered_audit_row_shows_as_broken_at_the_top(fresh_kx: Kontext, browser: Any) -> None:
    fresh_kx.start()
    api_new_agent(fresh_kx, "github:pulls:read", prefix="tamper", consent=False)
    board = Dashboard(fresh_kx, browser)
    try:
        page = board.go("activity")
        page.locator(".verify.ok").wait_for(timeout=WAIT)
        with sqlite3.connect(fresh_kx.database) as db:  # an attacker with the file
            (row,) = db.execute("SELECT id FROM audit_events WHERE event = 'agent.created'")
            db.execute("DROP TRIGGER audit_no_update")
            db.execute(
                "UPDATE audit_events SET body = replace(body, 'tamper', 'innocent') WHERE id = ?",
                row,
            )
        page.click("button:text('Verify again')")
        banner = page.locator(".verify.bad")
        banner.wait_for(timeout=WAIT)
        assert banner.get_attribute("role") == "alert"
        assert "Audit chain broken" in banner.inner_text()
        assert f"broken at event {row[0]}" in banner.inner_text()
    finally:
        board.close()


def test_screenshots_of_every_page(gw: Kontext, dash: Dashboard, tmp_path: Path) -> None:
    name = api_new_agent(gw, "github:pulls:read", prefix="pictured")
    with Agent(gw, name) as agent:
        agent.call()
        for section in ("", "credentials", "grants", "activity", "integrations", "policy"):
            page = dash.go(section)
            page.wait_for_timeout(300)  # let the stream's first batch render
            if section == "grants":  # who approved: a sign-in's issuer, or the local account
                lede = page.locator("p.lede.spaced").inner_text()
                assert "(local account)" in lede or "signed in at http" in lede, lede
            shot = tmp_path / f"dashboard-{section or 'overview'}.png"
            page.screenshot(path=str(shot))
            assert shot.read_bytes()[16:24] == (1280).to_bytes(4, "big") + (800).to_bytes(4, "big")


# -- policy ----------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "docs" / "policy-examples"


def test_the_policy_page_lists_files_explains_as_the_cli_and_shows_a_broken_file(
    fresh_kx: Kontext, browser: Any
) -> None:
    policy_d = fresh_kx.home / "config" / "policy.d"
    policy_d.mkdir(parents=True)
    for example in ("00-baseline.cedar", "30-max-one-hour.cedar"):
        (policy_d / example).write_text((EXAMPLES / example).read_text())
    fresh_kx.env["KONTEXT_SYSTEM_POLICY_DIR"] = str(fresh_kx.home / "no-system-policy")
    fresh_kx.start()
    name = api_new_agent(fresh_kx, "github:pulls:read", prefix="explained")
    cli = fresh_kx.run(
        "policy", "explain", "--agent", name, "--scope", "github:pulls:read", "--ttl", "2h",
        "--json",
    )  # fmt: skip
    expected = json.loads(cli.stdout)["layers"][0]
    assert expected["decision"] == "deny" and expected["policy_ids"] == ["max-one-hour"]
    board = Dashboard(fresh_kx, browser)
    try:
        page = board.go("policy")
        files = page.locator("ul.file-list").inner_text()
        assert "00-baseline.cedar" in files and "30-max-one-hour.cedar" in files
        page.select_option("#explain-agent", name)
        page.check("input[name=scope][value='github:pulls:read']")
        page.fill("#explain-ttl", "7200")
        page.click("button:text('Explain')")
        org = page.locator("table.verdicts tbody tr").first
        org.wait_for(timeout=WAIT)
        cells = org.locator("td").all_inner_texts()
        assert cells == ["Org policy", "deny", expected["reason"]], cells
        assert fresh_kx.run("policy", "explain", "--agent", name, "--json").returncode == 0

        broken = policy_d / "50-broken.cedar"
        broken.write_text("// an edit in progress\n\nforbid (principal, action resource);\n")
        assert wait_until(lambda: fresh_kx.run("policy", "check").returncode == 11, timeout=30)
        page = board.go("policy")
        alert = page.locator("[role=alert]")
        alert.wait_for(timeout=WAIT)
        assert "every request is denied until it is fixed" in alert.inner_text()
        assert f"{broken}:3:" in alert.inner_text()
        assert board.errors == []
    finally:
        board.close()
