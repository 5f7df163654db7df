"""A CI platform's OIDC issuer, for real: discovery, a JWKS, and GitHub's token request.

A real HTTP server on 127.0.0.1 in a thread, standing in for
``token.actions.githubusercontent.com`` (or gitlab.com): it serves OIDC
discovery and its JWKS, mints GitHub-shaped and GitLab-shaped tokens signed with
an RSA key generated for each test (joserfc, a JOSE library independent of the
daemon's PyJWT), and answers ``ACTIONS_ID_TOKEN_REQUEST_URL`` as GitHub does:
only with the right request token, and for the audience asked for.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwk, jwt

MAIN_SHA = "0" * 40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Job:
    """One CI job as a platform describes it in its token."""

    repository: str = "acme/backend"
    ref: str = "refs/heads/main"
    sha: str = MAIN_SHA
    workflow: str = ".github/workflows/ci.yml"
    event: str = "push"
    protected: bool = True
    run_id: str = "7001"
    attempt: str = "1"
    environment: str | None = None
    actor: str = "octocat"

    def github(self) -> dict[str, Any]:
        sub = f"repo:{self.repository}:" + (
            f"environment:{self.environment}" if self.environment else f"ref:{self.ref}"
        )
        claims = {
            "sub": sub,
            "repository": self.repository,
            "repository_owner": self.repository.split("/")[0],
            "ref": self.ref,
            "ref_type": "branch" if self.ref.startswith("refs/heads/") else "tag",
            "ref_protected": "true" if self.protected else "false",
            "sha": self.sha,
            "workflow": "CI",
            "workflow_ref": f"{self.repository}/{self.workflow}@{self.ref}",
            "workflow_sha": self.sha,
            "job_workflow_ref": f"{self.repository}/{self.workflow}@{self.ref}",
            "event_name": self.event,
            "run_id": self.run_id,
            "run_number": "42",
            "run_attempt": self.attempt,
            "actor": self.actor,
            "runner_environment": "github-hosted",
        }
        if self.environment:
            claims["environment"] = self.environment
        return claims

    def gitlab(self, host: str) -> dict[str, Any]:
        kind = "branch" if self.ref.startswith("refs/heads/") else "tag"
        short = self.ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        claims = {
            "sub": f"project_path:{self.repository}:ref_type:{kind}:ref:{short}",
            "project_path": self.repository,
            "namespace_path": self.repository.split("/")[0],
            "ref": short,
            "ref_type": kind,
            "ref_path": self.ref,
            "ref_protected": "true" if self.protected else "false",
            "sha": self.sha,
            "ci_config_ref_uri": f"{host}/{self.repository}//.gitlab-ci.yml@{self.ref}",
            "pipeline_source": self.event,
            "pipeline_id": self.run_id,
            "job_id": self.attempt,
            "user_login": self.actor,
        }
        if self.environment:
            claims["environment"] = self.environment
        return claims


@dataclass
class Issuer:
    """``with ci_issuer() as iss: iss.url, iss.mint(...)``."""

    server: ThreadingHTTPServer
    key: jwk.RSAKey = field(default_factory=lambda: jwk.RSAKey.generate_key(2048, private=True))
    kid: str = field(default_factory=lambda: secrets.token_hex(8))
    request_token: str = field(default_factory=lambda: "req-" + secrets.token_urlsafe(24))
    job: Job = field(default_factory=Job)
    shape: str = "github"
    lifetime: int = 300
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # every path asked for
    minted: list[str] = field(default_factory=list)  # tokens the request endpoint gave out
    answer: str | None = None  # a token the request endpoint gives instead of a new one
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def request_url(self) -> str:
        """What GitHub puts in ``ACTIONS_ID_TOKEN_REQUEST_URL``."""
        return f"{self.url}/_apis/token?api-version=2.0"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self.key.as_dict(private=False), "kid": self.kid, "use": "sig"}]}

    def claims(self, audience: str, **override: Any) -> dict[str, Any]:
        now = int(time.time())
        host = self.url.removeprefix("http://")  # GitLab names its host without a scheme
        shaped = self.job.github() if self.shape == "github" else self.job.gitlab(host)
        base = {
            "iss": self.url,
            "aud": audience,
            "jti": secrets.token_hex(16),
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.lifetime,
            **shaped,
        }
        base.update(override)
        return {k: v for k, v in base.items() if v is not None}

    def mint(self, audience: str = "kontext", *, key: Any = None, **override: Any) -> str:
        """A token signed RS256 with this issuer's key (or ``key``)."""
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, self.claims(audience, **override), key or self.key)

    def forged(self, header: dict[str, Any], audience: str = "kontext") -> str:
        """A token with ``header`` and a signature of nothing (alg none and friends)."""
        payload = self.claims(audience)
        parts = [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode())]
        return ".".join([*parts, ""])

    def env(self) -> dict[str, str]:
        """The variables GitHub gives a job with ``permissions: id-token: write``."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.request_url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
            "GITHUB_ACTIONS": "true",
            "CI": "true",
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        issuer: Issuer = self.server.issuer
        path, _, query = self.path.partition("?")
        with issuer.lock:
            issuer.paths.append(path)
        if path == "/.well-known/openid-configuration":
            # GitHub's discovery document: an issuer and its keys, no login endpoints.
            self._json(
                200,
                {
                    "issuer": issuer.url,
                    "jwks_uri": f"{issuer.url}/.well-known/jwks",
                    "subject_types_supported": ["public", "pairwise"],
                    "response_types_supported": ["id_token"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        elif path == "/.well-known/jwks":
            self._json(200, issuer.jwks())
        elif path == "/_apis/token":
            self._token_request(issuer, urllib.parse.parse_qs(query))
        else:
            self._json(404, {"message": "Not Found"})

    def _token_request(self, issuer: Issuer, query: dict[str, list[str]]) -> None:
        authorized = self.headers.get("Authorization", "").lower() == (
            f"bearer {issuer.request_token}".lower()
        )
        audience = query.get("audience", [None])[0]
        with issuer.lock:
            issuer.requests.append({"audience": audience, "authorized": authorized})
        if not authorized:
            self._json(401, {"message": "Bad credentials"})
        elif not audience:
            self._json(400, {"message": "audience is required here"})
        else:
            token = issuer.answer or issuer.mint(audience)
            with issuer.lock:
                issuer.minted.append(token)
            self._json(200, {"count": 1, "value": token})


@contextmanager
def ci_issuer(shape: str = "github") -> Iterator[Issuer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    issuer = Issuer(server, shape=shape)
    server.issuer = issuer  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
