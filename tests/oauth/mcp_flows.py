"""Driving the issuer the way a public MCP client and the user's browser do, over HTTP."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx
from conftest import Kontext

REDIRECT = "http://127.0.0.1:{port}/callback"
RESOURCE = "http://127.0.0.1:8765/mcp"
READ = "github:pulls:read"


def register(k: Kontext, **meta: Any) -> httpx.Response:
    body = {"redirect_uris": [REDIRECT.format(port=4567)], "client_name": "Claude Desktop", **meta}
    with k.http() as http:
        return http.post("/register", json=body)


def client_id(k: Kontext, **meta: Any) -> str:
    answer = register(k, grant_types=["authorization_code", "refresh_token"], **meta)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["client_id"])


@dataclass
class Flow:
    """One authorization request: its PKCE verifier, state and redirect URI."""

    client_id: str
    verifier: str
    state: str
    redirect_uri: str
    resource: str

    def query(self, scope: str = READ, **extra: str) -> dict[str, str]:
        challenge = hashlib.sha256(self.verifier.encode()).digest()
        return {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": self.state,
            "code_challenge": base64.urlsafe_b64encode(challenge).rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            "scope": scope,
            "resource": self.resource,
            **extra,
        }


def flow(client: str, port: int = 9999, resource: str = RESOURCE) -> Flow:
    return Flow(
        client,
        secrets.token_urlsafe(48),
        secrets.token_urlsafe(8),
        REDIRECT.format(port=port),
        resource,
    )


def authorize(k: Kontext, params: dict[str, str], **headers: str) -> httpx.Response:
    with k.http() as http:
        return http.get("/authorize", params=params, headers=headers)


def form_of(page: str) -> dict[str, str]:
    """The hidden fields of the consent page's form."""
    fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page))
    assert {"request_uri", "csrf"} <= set(fields), page
    return fields


def answer(k: Kontext, page: str, decision: str = "approve", **fields: str) -> httpx.Response:
    """POST the page's form as the browser would (our Origin)."""
    form = {**form_of(page), "decision": decision, "grant_duration": "3600", **fields}
    with k.http() as http:
        return http.post("/authorize", data=form, headers={"Origin": k.base_url})


def query_of(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def approved_code(k: Kontext, f: Flow, scope: str = READ, **choice: str) -> str:
    """Open the page, approve it (a new agent unless ``agent=`` is given), return the code."""
    page = authorize(k, f.query(scope))
    assert page.status_code == 200, page.text
    choice = choice or {"agent": "", "new_agent": f"mcp-{secrets.token_hex(4)}"}
    decided = answer(k, page.text, **choice)
    assert decided.status_code == 303, decided.text
    query = query_of(decided.headers["location"])
    assert query["state"] == f.state and query["iss"] == k.base_url
    return query["code"]


def token(k: Kontext, **form: str) -> httpx.Response:
    with k.http() as http:
        return http.post("/token", data=form)


def redeem(k: Kontext, f: Flow, code: str, **extra: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": f.verifier,
        "redirect_uri": f.redirect_uri,
        "client_id": f.client_id,
        "resource": f.resource,
    }
    return token(k, **(form | extra))


def tokens(k: Kontext, f: Flow, scope: str = READ, **choice: str) -> dict[str, Any]:
    """Register-free shortcut: approve ``f`` and redeem its code; the token answer."""
    redeemed = redeem(k, f, approved_code(k, f, scope, **choice))
    assert redeemed.status_code == 200, redeemed.text
    return dict(redeemed.json())


def refresh(k: Kontext, f: Flow, refresh_token: str) -> httpx.Response:
    return token(k, grant_type="refresh_token", refresh_token=refresh_token, client_id=f.client_id)


def claims(jwt: str) -> dict[str, Any]:
    import json

    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
