"""A Client ID Metadata Document fetched over https, from a host on the internet.

The test machine has no internet, so the internet is built: the daemon runs in a
network namespace of its own where ``client.example.com`` is a public address
(``1.2.3.4``, on that namespace's loopback device) served by a real TLS server,
``/etc/hosts`` (bind-mounted in a mount namespace of its own) names it, and the
certificate authority the daemon trusts is the test's (``SSL_CERT_FILE``, which
OpenSSL reads for the default store). The MCP client — a registration-free client
whose ``client_id`` is the document's URL — and the user's browser act from inside
that namespace, over HTTP, as in ``tests/oauth/test_mcp_clients.py``.

- the document names the client: the page shows its name and where it is published,
  the user approves, and the client redeems the code for a token bound to the
  resource, with the URL as its ``client_id``;
- a document on a host whose certificate the trusted store does not vouch for is
  refused (the daemon checks the name the URL gives, over the address it checked);
- a name resolving to a private address is refused before any connection.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import KONTEXT, Kontext, api_audit

RESOURCE = "http://127.0.0.1:8765/mcp"
GOOD = "https://client.example.com/oauth/client.json"
ROGUE = "https://rogue.example.com/oauth/client.json"
INTERNAL = "https://internal.example.com/oauth/client.json"
HOSTS = """127.0.0.1 localhost
1.2.3.4 client.example.com
1.2.3.5 rogue.example.com
10.0.0.5 internal.example.com
"""
NAMESPACE_SETUP = (
    "ip link set lo up && ip addr add 1.2.3.4/32 dev lo && ip addr add 1.2.3.5/32 dev lo"
    ' && mount --bind "$HOSTS_FILE" /etc/hosts && exec "$@"'
)

# Runs inside the daemon's namespaces: the two TLS servers, then the client and the
# browser's requests; prints what each saw.
CLIENT_SCRIPT = r"""
import base64, hashlib, http.server, json, re, secrets, ssl, sys, threading
import urllib.error, urllib.parse, urllib.request
base, certs, resource = sys.argv[1], sys.argv[2], sys.argv[3]
docs = {}

class Docs(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = docs.get(self.headers.get("Host", "").split(":")[0] + self.path, b"")
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

for address, name in (("1.2.3.4", "good"), ("1.2.3.5", "rogue")):
    server = http.server.ThreadingHTTPServer((address, 443), Docs)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(f"{certs}/{name}.pem", f"{certs}/{name}.key")
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

for url in sys.argv[4:]:
    parts = urllib.parse.urlsplit(url)
    docs[parts.hostname + parts.path] = json.dumps({
        "client_id": url, "client_name": "Inspector Over HTTPS",
        "redirect_uris": ["http://127.0.0.1:9999/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none"}).encode()

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None

opener = urllib.request.build_opener(NoRedirect)

def call(path, data=None, headers=None):
    req = urllib.request.Request(base + path, data=data, headers=headers or {})
    try:
        with opener.open(req, timeout=30) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)

seen = {}
for url in sys.argv[4:]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": url,
        "redirect_uri": "http://127.0.0.1:9999/callback", "state": "s1",
        "code_challenge": challenge.rstrip(b"=").decode(), "code_challenge_method": "S256",
        "scope": "github:pulls:read", "resource": resource})
    status, page, _ = call("/authorize?" + query)
    seen[url] = {"page": status, "text": page}
    if status != 200:
        continue
    form = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page))
    form.update(decision="approve", agent="", new_agent="https-document-client",
                grant_duration="3600")
    status, _, headers = call("/authorize", urllib.parse.urlencode(form).encode(),
                              {"Origin": base})
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(headers["Location"]).query))["code"]
    status, body, _ = call("/token", urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
        "redirect_uri": "http://127.0.0.1:9999/callback", "client_id": url,
        "resource": resource}).encode())
    seen[url]["token"] = status
    token = json.loads(body)["access_token"]
    _, facts, _ = call("/introspect", urllib.parse.urlencode({"token": token}).encode())
    seen[url]["facts"] = json.loads(facts)
print(json.dumps(seen))
"""


def _unavailable() -> str | None:
    if os.getuid() != 0:
        return "a network and mount namespace of its own needs root"
    for tool in ("unshare", "nsenter", "ip", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        [
            "unshare",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "ip",
            "link",
            "set",
            "lo",
            "up",
        ],
        capture_output=True,
        text=True,
    )
    return f"cannot make namespaces: {probe.stderr.strip()}" if probe.returncode else None


def _certificates(where: Path) -> Path:
    """A CA the daemon will trust, a certificate it signed for client.example.com, and a
    self-signed one for rogue.example.com (no CA the daemon trusts vouches for it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def issue(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    def save(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (where / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (where / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key, good_key, rogue_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = issue("kontext test CA", ca_key, "kontext test CA", ca_key, True)
    save("ca", ca, ca_key)
    save("good", issue("client.example.com", good_key, "kontext test CA", ca_key, False), good_key)
    rogue = issue("rogue.example.com", rogue_key, "rogue.example.com", rogue_key, False)
    save("rogue", rogue, rogue_key)
    return where / "ca.pem"


def test_a_document_is_fetched_over_https_from_a_public_host(
    fresh_kx: Kontext, tmp_path: Path
) -> None:
    why = _unavailable()
    if why:
        pytest.skip(why)
    assert ipaddress.ip_address("1.2.3.4").is_global  # what the daemon will check
    k = fresh_kx
    ca = _certificates(tmp_path)
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    env = {**k.env, "SSL_CERT_FILE": str(ca), "HOSTS_FILE": str(hosts)}
    started = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
         NAMESPACE_SETUP, "sh", KONTEXT, "daemon", "start"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    pid = (k.runtime / "kontextd.lock").read_text().strip()
    ran = subprocess.run(
        ["nsenter", f"--target={pid}", "--net", "--mount", sys.executable, "-c", CLIENT_SCRIPT,
         f"http://127.0.0.1:{k.port}", str(tmp_path), RESOURCE, GOOD, ROGUE, INTERNAL],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)

    good = seen[GOOD]
    assert good["page"] == 200, good["text"]
    assert "Inspector Over HTTPS" in good["text"] and "unverified" in good["text"]
    assert "published at <strong>client.example.com</strong>" in good["text"]
    assert good["token"] == 200
    facts = good["facts"]
    assert facts["active"] and facts["client_id"] == GOOD and facts["aud"] == RESOURCE
    assert facts["act"] == {"sub": "agent:https-document-client"}

    rogue = seen[ROGUE]
    assert rogue["page"] == 400 and "SSLCertVerificationError" in rogue["text"], rogue["text"]
    internal = seen[INTERNAL]
    assert internal["page"] == 400 and "non-public address (10.0.0.5)" in internal["text"]

    refused = {
        e["client_id"]: e["reason"]
        for e in api_audit(k)
        if e["event"] == "oauth.client_refused" and e["endpoint"] == "/authorize"
    }
    assert "SSLCertVerificationError" in refused[ROGUE] and "non-public" in refused[INTERNAL]
    issued = [
        e for e in api_audit(k, agent="https-document-client") if e["event"] == "credential.issued"
    ]
    assert issued and issued[0]["kind"] == "mcp" and issued[0]["client_id"] == GOOD
