"""An MCP server that reviews pull requests: kontext authorizes it, each call gets a credential.

    kontext integration connect github        # once: the gateway holds the GitHub key
    pip install '.[mcp]'                      # in kontext's checkout (PyPI's 'kontext' is not us)
    python docs/examples/mcp_pr_reviewer.py   # http://127.0.0.1:8765/mcp (PORT= to change)

Add ``http://127.0.0.1:8765/mcp`` to an MCP client as a streamable-HTTP server.
The client finds kontext from this server's 401 (RFC 9728), registers, and opens
kontext's consent page, where you pick the agent it acts as. Each tool call then
exchanges the client's token (``aud`` = this server) for a credential narrowed
to one repository and one scope, for that one request, through the gateway.
"""

from __future__ import annotations

import os
from typing import Any

from mcp.server.mcpserver import MCPServer

import kontext
from kontext import mcp as kontext_mcp

PORT = int(os.environ.get("PORT", "8765"))
URL = f"http://127.0.0.1:{PORT}/mcp"
SCOPES = ["github:pulls:read", "github:pulls:write"]

server = MCPServer(
    "pr-reviewer",
    instructions="List and review the pull requests of a GitHub repository (owner/name).",
    **kontext_mcp.auth(URL, scopes=SCOPES),
)


@server.tool()
async def list_pulls(repo: str) -> list[dict[str, Any]]:
    """The open pull requests of ``repo`` (``owner/name``): number and title."""
    reader = kontext.async_client(
        "github", scopes=["pulls:read"], target=repo, token=kontext_mcp.token()
    )
    with kontext_mcp.tool_errors():  # a refusal reaches the client in words
        async with reader as gh:  # each request carries a credential of its own
            answer = await gh.get(f"repos/{repo}/pulls", params={"state": "open"})
        answer.raise_for_status()
    return [{"number": p["number"], "title": p.get("title", "")} for p in answer.json()]


@server.tool()
async def review_pr(repo: str, number: int, body: str) -> str:
    """Post ``body`` as a review comment on pull request ``number`` of ``repo``."""
    writer = kontext.async_client(
        "github", scopes=["pulls:write"], target=repo, token=kontext_mcp.token()
    )
    with kontext_mcp.tool_errors():
        async with writer as gh:
            answer = await gh.post(
                f"repos/{repo}/pulls/{number}/reviews", json={"body": body, "event": "COMMENT"}
            )
        answer.raise_for_status()
    return f"posted review {answer.json()['id']} on {repo}#{number}"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=PORT)
