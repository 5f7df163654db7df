"""The official MCP SDK as a client named by its Client ID Metadata Document.

Run inside the namespaces of ``tests/security/test_mcp_https_documents.py`` (where
``client.example.com`` is a public host serving the document over TLS), with
``KONTEXT_HOME`` naming the daemon there::

    python tests/mcp/document_client.py CERTS_DIR DOCUMENT_URL

It serves the document, starts the example server as the README says, and drives
the SDK's ``OAuthClientProvider`` with ``client_metadata_url``; the user's part is
played over HTTP as a browser would (load the page, post Approve for a new agent,
follow the redirect to the SDK's callback). Prints what it saw as one JSON line.
"""

from __future__ import annotations

import json
import os
import re
import sys
import types
from typing import Any

import anyio
import httpx

from tests.mcp.harness import McpClient, example_server
from tests.security.documents_tls import document, serve


def approve(pages: list[str]) -> Any:
    """The redirect handler: the user approves as a new agent, ``sdk-by-document``."""

    def act(url: str) -> None:
        base = url.split("/authorize", 1)[0]
        with httpx.Client(timeout=30) as http:
            page = http.get(url)
            pages.append(page.text)
            form = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
            form |= {"decision": "approve", "agent": "", "new_agent": "sdk-by-document"}
            decided = http.post(f"{base}/authorize", data=form, headers={"Origin": base})
            http.get(decided.headers["location"])  # the browser goes on to the callback

    async def browse(url: str) -> None:
        await anyio.to_thread.run_sync(act, url)

    return browse


def main() -> None:
    certs, url = sys.argv[1], sys.argv[2]
    # Any port on loopback at request time (RFC 8252 §7.3): the SDK's listener picks one.
    serve(certs, {url: document(url, ["http://127.0.0.1/callback"])})
    pages: list[str] = []
    with example_server(types.SimpleNamespace(env=dict(os.environ))) as server:  # type: ignore[arg-type]
        client = McpClient(server, approve(pages), metadata_url=url)
        result = anyio.run(lambda: client.call("list_pulls", repo="acme/backend"))
    seen = {
        "client_id": client.storage.client_info.client_id,
        "opened": len(client.opened),
        "page": pages[0] if pages else "",
        "is_error": result.is_error,
        "text": result.content[0].text if result.content else "",
    }
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
