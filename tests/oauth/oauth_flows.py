"""Driving the embedded issuer over HTTP the way the CLI and a browser do."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import urllib.parse
from typing import Any

import httpx
from conftest import Kontext

REDIRECT = "http://127.0.0.1:{port}/callback/test"


def client_secret(k: Kontext) -> str:
    return (k.runtime / "oauth-client-secret").read_text().strip()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def push(k: Kontext, client_id: str, secret: str | None = "", **params: str) -> httpx.Response:
    """POST /par with client_secret_basic (``secret=None``: no authentication)."""
    form = {
        "response_type": "code",
        "redirect_uri": REDIRECT.format(port=55555),
        "state": "st-" + secrets.token_urlsafe(8),
        **params,
    }
    auth = None
    if secret is not None:
        auth = (urllib.parse.quote(client_id, safe=""), secret or client_secret(k))
    else:
        form["client_id"] = client_id
    with k.http() as http:
        return http.post("/par", data=form, auth=auth)


def page(k: Kontext, client_id: str, request_uri: str) -> httpx.Response:
    with k.http() as http:
        return http.get("/authorize", params={"client_id": client_id, "request_uri": request_uri})


def decide(
    k: Kontext, client_id: str, request_uri: str, decision: str = "approve", **fields: str
) -> httpx.Response:
    """GET the page, read its CSRF token, POST the decision (as the form would)."""
    html = page(k, client_id, request_uri).text
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    form = {"request_uri": request_uri, "csrf": match.group(1), "decision": decision, **fields}
    with k.http() as http:
        return http.post("/authorize", data=form, headers={"Origin": k.base_url})


def query_of(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def authorized_code(k: Kontext, client_id: str = "kontext", **params: str) -> tuple[str, str, str]:
    """Push, approve, return (code, verifier, redirect_uri)."""
    verifier, challenge = pkce()
    defaults = {"scope": "openid email offline_access", "nonce": "n-1"}
    pushed = push(
        k,
        client_id,
        code_challenge=challenge,
        code_challenge_method="S256",
        **{**defaults, **params},
    )
    assert pushed.status_code == 201, pushed.text
    answer = decide(k, client_id, pushed.json()["request_uri"], email="alice@acme.com")
    assert answer.status_code == 303, answer.text
    query = query_of(answer.headers["location"])
    return query["code"], verifier, params.get("redirect_uri", REDIRECT.format(port=55555))


def token(
    k: Kontext, client_id: str = "kontext", secret: str | None = "", **form: str
) -> httpx.Response:
    auth = (
        (urllib.parse.quote(client_id, safe=""), secret or client_secret(k))
        if secret is not None
        else None
    )
    with k.http() as http:
        return http.post("/token", data=form, auth=auth)


def redeem(
    k: Kontext, code: str, verifier: str, redirect: str, client_id: str = "kontext"
) -> httpx.Response:
    return token(
        k,
        client_id,
        grant_type="authorization_code",
        code=code,
        code_verifier=verifier,
        redirect_uri=redirect,
    )


def active(k: Kontext, value: str) -> bool:
    return bool(k.introspect(value)["active"])


def metadata(k: Kontext) -> dict[str, Any]:
    with k.http() as http:
        return dict(http.get("/.well-known/openid-configuration").json())
