"""TLS servers for Client ID Metadata Documents on "public" addresses, for a test's
network namespace (``tests/security/test_mcp_https_documents.py``).

``1.2.3.4:443`` presents ``good.pem`` (``client.example.com``, signed by the CA the
daemon trusts); ``1.2.3.5:443`` presents ``rogue.pem`` (self-signed). Both serve
the documents they are given, by host name and path.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import urllib.parse

SERVERS = (("1.2.3.4", "good"), ("1.2.3.5", "rogue"))


def document(url: str, redirect_uris: list[str]) -> bytes:
    """A public client's metadata document naming itself ``url``."""
    return json.dumps(
        {
            "client_id": url,
            "client_name": "Inspector Over HTTPS",
            "redirect_uris": redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }
    ).encode()


def serve(certs: str, documents: dict[str, bytes]) -> None:
    """Start both servers (daemon threads) answering ``documents`` (URL -> body)."""
    by_place = {
        (parts.hostname or "") + parts.path: body
        for parts, body in ((urllib.parse.urlsplit(u), b) for u, b in documents.items())
    }

    class Documents(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = by_place.get(self.headers.get("Host", "").split(":")[0] + self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    for address, name in SERVERS:
        server = http.server.ThreadingHTTPServer((address, 443), Documents)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(f"{certs}/{name}.pem", f"{certs}/{name}.key")
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
