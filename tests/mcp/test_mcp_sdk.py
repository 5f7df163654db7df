"""The official MCP Python SDK, end to end, against the example server and kontext.

The SDK is the MCP client (streamable HTTP with its ``OAuthClientProvider``); the
example server (``docs/examples/mcp_pr_reviewer.py``, started as the README
says) is the resource server; kontext is the authorization server and the
gateway in front of a fake GitHub. The consent page is answered in a real
headless Chromium, as the user would.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import Kontext, api_audit, api_new_agent, gateway_daemon, wait_until
from tests.mcp.harness import AuthorizationFailed, McpClient, example_server
from tests.upstream.fake_github import API_KEY, FakeGitHub

pytest.importorskip("mcp", reason="the mcp extra is in the test extra")
pytest.importorskip("playwright")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (.ci/run installs it)"
)
REPO = "acme/backend"
SCOPES = ("github:pulls:read", "github:pulls:write")  # what the example server asks
Act = Callable[[Any], Awaitable[None]]


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Kontext, FakeGitHub, str]]:
    """kontext with GitHub connected (to the fake), and the example MCP server."""
    with FakeGitHub() as github, gateway_daemon(github.url, API_KEY) as k, example_server(k) as url:
        yield k, github, url


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as play:
        browser = await play.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def user(browser: Any, act: Act, seen: list[str]) -> Callable[[str], Awaitable[None]]:
    """The SDK's redirect handler: open the URL in Chromium and let ``act`` answer it."""

    async def browse(url: str) -> None:
        page = await browser.new_page()
        try:
            await page.goto(url)
            seen.append(await page.inner_text("body"))
            await act(page)
            await page.wait_for_selector("text=Done", timeout=60_000)
        finally:
            await page.close()

    return browse


def approve_as_new(name: str) -> Act:
    async def act(page: Any) -> None:
        await page.check('input[name=agent][value=""]')
        await page.fill("input[name=new_agent]", name)
        await page.click("button[value=approve]")

    return act


async def deny(page: Any) -> None:
    await page.click("button[value=deny]")


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(fn)


def test_the_sdk_discovers_registers_is_approved_and_calls_github_through_the_gateway(
    world: tuple[Kontext, FakeGitHub, str],
) -> None:
    k, github, url = world
    unauthorized = httpx.post(url, json={})  # what the SDK sees first
    assert unauthorized.status_code == 401
    assert "resource_metadata=" in unauthorized.headers["www-authenticate"]
    pages: list[str] = []

    async def scenario() -> tuple[Any, Any, McpClient]:
        async with chromium() as browser:
            client = McpClient(url, user(browser, approve_as_new("claude-sdk"), pages))
            listed = await client.call("list_pulls", repo=REPO)
            reviewed = await client.call("review_pr", repo=REPO, number=3, body="Looks good")
            return listed, reviewed, client

    listed, reviewed, client = run(scenario)
    assert not listed.is_error and [p["number"] for p in listed.structured_content["result"]]
    assert "posted review" in reviewed.content[0].text
    assert len(client.opened) == 1  # approved once; the second session reused the token
    page = pages[0]
    assert "An application on this computer" in page and "Claude Desktop (test)" in page
    assert "unverified" in page and "Read pull requests" in page and url in page
    assert "requesting access to GitHub" in page
    assert github.reviews[-1]["body"] == "Looks good"
    client_id = client.storage.client_info.client_id
    events = api_audit(k, agent="claude-sdk")
    minted = [e for e in events if e["event"] == "credential.issued"]
    assert minted[0]["kind"] == "mcp" and minted[0]["client_id"] == client_id
    per_call = [e for e in minted if e["kind"] == "exchange"]
    assert len(per_call) >= 2  # one per gateway request the tools made
    assert all(e["client_id"] == client_id and e["parent"] == minted[0]["jti"] for e in per_call)
    calls = [e for e in events if e["event"] == "api.call"]
    assert {c["path"] for c in calls} >= {
        f"/repos/{REPO}/pulls",
        f"/repos/{REPO}/pulls/3/reviews",
    }
    # The fake GitHub saw the gateway's key, never a kontext token.
    assert all("eyJ" not in str(s.headers) for s in github.api_calls())


def test_a_refused_tool_call_tells_the_client_why(world: tuple[Kontext, FakeGitHub, str]) -> None:
    """GitHub disconnected after approval: the tool's credential is refused, and the
    client reads kontext's own words (``kontext.mcp.tool_errors``), not a bare failure."""
    k, _, url = world

    async def scenario() -> Any:
        async with chromium() as browser:
            client = McpClient(url, user(browser, approve_as_new("claude-disconnected"), []))
            assert not (await client.call("list_pulls", repo=REPO)).is_error
            await anyio.to_thread.run_sync(lambda: k.ok("integration", "disconnect", "github"))
            try:
                return await client.call("list_pulls", repo=REPO)
            finally:
                await anyio.to_thread.run_sync(
                    lambda: k.ok(
                        "integration", "connect", "github", "--secret-stdin", input=API_KEY + "\n"
                    )
                )

    refused = run(scenario)
    text = refused.content[0].text
    assert refused.is_error and "kontext integration connect github" in text, text
    assert API_KEY not in text and "eyJ" not in text


def test_the_sdk_refreshes_a_short_token_without_a_new_page(
    world: tuple[Kontext, FakeGitHub, str],
) -> None:
    """An existing agent picked on the page, with a 10-second ceiling: the client's
    access tokens outlive nothing, and the SDK rotates its refresh token instead of
    asking the user again."""
    k, _, url = world
    name = api_new_agent(k, *SCOPES, prefix="claude-short", max_ttl=10)

    async def pick(page: Any) -> None:
        await page.check(f"input[name=agent][value={name}]")
        await page.click("button[value=approve]")

    async def scenario() -> tuple[McpClient, Any, Any]:
        async with chromium() as browser:
            client = McpClient(url, user(browser, pick, []))
            assert not (await client.call("list_pulls", repo=REPO)).is_error
            first = client.storage.tokens
            expires = time.time() + int(first.expires_in)
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: time.time() > expires + 1, timeout=60)
            )
            return client, first, await client.call("list_pulls", repo=REPO)

    client, first, second = run(scenario)
    assert not second.is_error
    assert len(client.opened) == 1  # no second page: the refresh token did it
    assert client.storage.tokens.refresh_token != first.refresh_token  # rotated
    minted = [e for e in api_audit(k, agent=name) if e["event"] == "credential.issued"]
    assert sum(e["kind"] == "mcp" for e in minted) >= 2


def test_a_token_for_another_resource_is_refused(world: tuple[Kontext, FakeGitHub, str]) -> None:
    k, _, url = world

    async def scenario() -> McpClient:
        async with chromium() as browser:
            client = McpClient(url, user(browser, approve_as_new("claude-one-server"), []))
            await client.call("list_pulls", repo=REPO)
            return client

    client = run(scenario)
    token = client.storage.tokens.access_token
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with example_server(k) as other:
        refused = httpx.post(other, json=hello, headers=headers)
    assert refused.status_code == 401  # its audience is the first server, not this one
    gateway = httpx.get(f"{k.base_url}/gw/github/repos/{REPO}/pulls", headers=headers)
    assert gateway.status_code == 403 and "not for github" in gateway.text


def test_revoking_the_agent_ends_the_session_and_sends_the_client_back(
    world: tuple[Kontext, FakeGitHub, str],
) -> None:
    k, _, url = world
    answers: list[Act] = [approve_as_new("claude-revoked"), deny]

    async def next_answer(page: Any) -> None:
        await answers.pop(0)(page)

    async def scenario() -> tuple[McpClient, BaseException | None]:
        async with chromium() as browser:
            client = McpClient(url, user(browser, next_answer, []))
            await client.call("list_pulls", repo=REPO)
            token = client.storage.tokens.access_token
            await anyio.to_thread.run_sync(lambda: k.ok("revoke", "agent:claude-revoked"))
            assert not k.introspect(token)["active"]
            try:
                await client.call("list_pulls", repo=REPO)
            except BaseException as exc:
                return client, exc
            return client, None

    client, failure = run(scenario)
    assert len(client.opened) == 2  # the next call went back to kontext's page
    assert failure is not None and "access_denied" in _messages(failure)
    refused = [e for e in api_audit(k) if e["event"] == "consent.denied"]
    assert refused and refused[-1]["client_id"] == client.storage.client_info.client_id


def test_a_denied_consent_gives_the_client_access_denied(
    world: tuple[Kontext, FakeGitHub, str],
) -> None:
    _, _, url = world

    async def scenario() -> BaseException | None:
        async with chromium() as browser:
            client = McpClient(url, user(browser, deny, []))
            try:
                await client.call("list_pulls", repo=REPO)
            except BaseException as exc:
                return exc
            return None

    failure = run(scenario)
    assert failure is not None and "access_denied" in _messages(failure)


def _messages(exc: BaseException) -> str:
    """Every message in an exception and the groups and causes around it."""
    found = [f"{type(exc).__name__}: {exc}"]
    for inner in getattr(exc, "exceptions", ()):
        found.append(_messages(inner))
    if exc.__cause__ is not None:
        found.append(_messages(exc.__cause__))
    if isinstance(exc, AuthorizationFailed):
        found.append(str(exc.args[0]))
    return re.sub(r"\s+", " ", " | ".join(found))
