"""Screenshots of the dashboard with believable data, for the README.

    .venv/bin/python -m tests.dashboard.screenshot docs/dashboard.png        # the Overview
    .venv/bin/python -m tests.dashboard.screenshot --all /tmp/shots          # every page

A real daemon in a throw-away home, its GitHub the fake upstream
(tests/upstream/fake_github.py), three agents approved on the real consent page,
some gateway traffic (one call refused for scope, one exec denied), two agents
running under ``kontext exec``; then headless Chromium at 1280x800 opens the
dashboard from a one-time link, as a user would.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tests.conftest import Kontext, approve_over_http, gateway_daemon
from tests.dashboard.harness import ARGS, CHROMIUM, HERE, Agent, link
from tests.upstream.fake_github import API_KEY, FakeGitHub

UPSTREAM = Path(__file__).parent.parent / "upstream"
AGENTS = {
    "pr-reviewer": ("PR Reviewer", ["github:pulls:read", "github:pulls:write"]),
    "issue-triage": ("Issue Triage", ["github:issues:read", "github:issues:write"]),
    "release-notes": ("Release Notes", ["github:contents:read", "github:metadata:read"]),
}
SECTIONS = ("", "credentials", "grants", "activity", "integrations", "policy")


def populate(k: Kontext) -> list[Agent]:
    """Agents, grants and traffic; returns the agents left running (close them after)."""
    with k.control() as api:
        for name, (display, scopes) in AGENTS.items():
            body = {"name": name, "display_name": display, "allow": scopes, "max_ttl": 3600}
            assert api.post("/v1/agents", json=body).status_code == 201
    for name, (_, scopes) in AGENTS.items():
        approve_over_http(k, name, scopes)
    for _ in range(3):  # reads a PR, posts a review, tries an issue it may not touch
        k.run("exec", "--agent", "pr-reviewer", "--target", "acme/backend", "--",
              sys.executable, str(UPSTREAM / "review_httpx.py"))  # fmt: skip
    k.run("exec", "--agent", "issue-triage", "--scope", "github:pulls:write", "--", "true")
    k.run("exec", "--agent", "release-notes", "--", "true")
    # Run as a user would (``python3 review.py`` in its folder), so the Process column
    # shows a command line as typed rather than this checkout's paths.
    work = k.home / "work"
    work.mkdir()
    k.env["PATH"] = f"{Path(sys.executable).parent}:{k.env['PATH']}"  # this python3 first
    for script in ("review.py", "triage.py"):
        shutil.copy(HERE / "agent_child.py", work / script)
    running = [
        Agent(k, "pr-reviewer", command=("python3", "review.py", "--pr", "42"), cwd=work),
        Agent(k, "issue-triage", "--ttl", "30m", command=("python3", "triage.py"), cwd=work),
    ]
    for agent in running:
        agent.call()
    return running


def shoot(k: Kontext, out: Path, every: bool) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(link(k))
        for section in SECTIONS if every else ("",):
            page.goto(f"{k.base_url}/dashboard/{section}")
            page.wait_for_selector("#content[aria-busy='false']")
            page.wait_for_timeout(500)  # the live stream's first batch
            path = out / f"dashboard-{section or 'overview'}.png" if every else out
            page.screenshot(path=str(path))
            written.append(path)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="the PNG to write (with --all: a directory)")
    parser.add_argument("--all", action="store_true", help="every page, into the directory OUT")
    args = parser.parse_args(argv)
    if args.all:
        args.out.mkdir(parents=True, exist_ok=True)
    with FakeGitHub() as github, gateway_daemon(github.url, API_KEY) as k:
        running = populate(k)
        try:
            for path in shoot(k, args.out, args.all):
                print(path)
        finally:
            for agent in running:
                agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
