"""The official MCP Python SDK as an MCP client, and the example server it talks to.

``McpClient`` is what an MCP host (Claude Desktop, an IDE) does with the SDK: the
streamable-HTTP transport with its ``OAuthClientProvider``, whose redirect
handler opens kontext's page in a browser (here a Chromium page the test drives)
and whose callback handler waits on a real loopback listener for the redirect.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from tests.conftest import Kontext, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "mcp_pr_reviewer.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def example_server(k: Kontext) -> Iterator[str]:
    """``python docs/examples/mcp_pr_reviewer.py`` as the README says, against ``k``:
    no ``KONTEXT_URL``, the server and its tools find the daemon of this home (its
    runtime directory) as they find the user's."""
    port = free_port()
    env = {**k.env, "PORT": str(port)}
    env.pop("KONTEXT_URL", None)
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: _listening(port) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Callback:
    """A real redirect listener on 127.0.0.1, as MCP clients run one."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self.used = 0  # queries handed to the SDK so far
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/callback":  # not the browser's /favicon.ico
                    outer.queries.append(dict(urllib.parse.parse_qsl(query)))
                body = b"<!doctype html><title>Done</title><p>Done. You can close this tab.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    async def result(self) -> Any:
        """The SDK's callback handler: the code, or the error the redirect carried."""
        from mcp.shared.auth import AuthorizationCodeResult

        deadline = time.monotonic() + 90
        while len(self.queries) == self.used and time.monotonic() < deadline:
            await anyio.sleep(0.05)
        if len(self.queries) == self.used:
            raise AuthorizationFailed("no redirect came back")
        query = self.queries[self.used]
        self.used += 1
        if "error" in query:
            raise AuthorizationFailed(query["error"])
        return AuthorizationCodeResult(
            code=query["code"], state=query.get("state"), iss=query.get("iss")
        )


class AuthorizationFailed(Exception):
    """The authorization ended without a code (``args[0]``: the OAuth error)."""


class Storage:
    """The SDK's ``TokenStorage``, in memory (an MCP host keeps it on disk)."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client_info: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


class McpClient:
    """One MCP host: its registration and tokens survive across ``call`` sessions."""

    def __init__(
        self,
        server_url: str,
        browse: Callable[[str], Awaitable[None]],
        metadata_url: str | None = None,
    ) -> None:
        self.server_url = server_url
        self.browse = browse  # opens the authorization URL and acts as the user
        self.metadata_url = metadata_url  # its Client ID Metadata Document, if it has one
        self.callback = Callback()
        self.storage = Storage()
        self.opened: list[str] = []
        self._provider: Any = None

    def provider(self) -> Any:
        """One ``OAuthClientProvider`` for the host's life, as a host keeps one per
        server: it remembers when its access token expires, and refreshes then."""
        if self._provider is None:
            self._provider = self._new_provider()
        return self._provider

    def _new_provider(self) -> Any:
        from mcp.client.auth import OAuthClientProvider
        from mcp.shared.auth import OAuthClientMetadata

        async def redirect(url: str) -> None:
            self.opened.append(url)
            await self.browse(url)

        metadata = OAuthClientMetadata.model_validate(
            {
                "client_name": "Claude Desktop (test)",
                "redirect_uris": [self.callback.url],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            }
        )
        return OAuthClientProvider(
            server_url=self.server_url,
            client_metadata=metadata,
            storage=self.storage,
            redirect_handler=redirect,
            callback_handler=self.callback.result,
            client_metadata_url=self.metadata_url,
        )

    async def call(self, tool: str, **arguments: Any) -> Any:
        """A fresh MCP session (as a host starts one), one tool call; its result."""
        import httpx2
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async with (
            httpx2.AsyncClient(auth=self.provider(), timeout=60) as http,
            streamable_http_client(self.server_url, http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            return await session.call_tool(tool, arguments)


def environment_has_chromium() -> bool:
    return os.path.exists("/usr/bin/chromium")
