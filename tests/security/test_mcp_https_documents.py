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
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import KONTEXT, Kontext, api_audit

ROOT = Path(__file__).resolve().parents[2]
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
import base64, hashlib, json, re, secrets, sys
import urllib.error, urllib.parse, urllib.request
from tests.security.documents_tls import document, serve
base, certs, resource = sys.argv[1], sys.argv[2], sys.argv[3]
serve(certs, {url: document(url, ["http://127.0.0.1:9999/callback"]) for url in sys.argv[4:]})

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


@dataclass
class Internet:
    """The daemon in namespaces where client.example.com is public and served over TLS."""

    k: Kontext
    pid: str
    certs: Path

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """``python ARGV`` inside the daemon's namespaces (the repository importable)."""
        env = {**self.k.env, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            ["nsenter", f"--target={self.pid}", "--net", "--mount", sys.executable, *argv],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip


@pytest.fixture
def internet(fresh_kx: Kontext, tmp_path: Path) -> Internet:
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
    return Internet(k, (k.runtime / "kontextd.lock").read_text().strip(), tmp_path)


def test_a_document_is_fetched_over_https_from_a_public_host(internet: Internet) -> None:
    k = internet.k
    ran = internet.run(
        "-c", CLIENT_SCRIPT, k.base_url, str(internet.certs), RESOURCE, GOOD, ROGUE, INTERNAL
    )
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


def test_the_official_sdk_names_itself_by_a_document(internet: Internet) -> None:
    """The MCP SDK's ``OAuthClientProvider`` with ``client_metadata_url``: kontext's
    metadata says documents are supported, so the SDK registers nothing and uses the
    URL as its ``client_id``; kontext fetches the document over https, the page names
    the client, and the example server accepts the token (its tool runs, and is told
    GitHub is not connected here — in words)."""
    k = internet.k
    ran = internet.run(
        str(ROOT / "tests" / "mcp" / "document_client.py"), str(internet.certs), GOOD
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen["client_id"] == GOOD and seen["opened"] == 1
    assert "Inspector Over HTTPS" in seen["page"] and "client.example.com" in seen["page"]
    assert seen["is_error"] and "kontext integration connect github" in seen["text"]
    registered = [e for e in api_audit(k) if e["event"] == "oauth.client_registered"]
    assert registered == []  # no RFC 7591 registration: the document named it
    (issued,) = [
        e for e in api_audit(k, agent="sdk-by-document") if e["event"] == "credential.issued"
    ]
    assert issued["kind"] == "mcp" and issued["client_id"] == GOOD
