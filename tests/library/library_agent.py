"""A long-running agent for the library tests: run under ``kontext exec``, driven over stdin.

Each line on stdin is a JSON command; each answer is one JSON line on stdout. It
uses only the public API (``import kontext``), as an agent would. It prints
tokens so the test — standing outside, like a resource server — can verify and
introspect them; a real agent would not.

Commands (``op``):

- ``require``: ``n`` credentials (default 1) with ``args`` (scopes, target, ttl);
- ``with`` / ``async_with``: one credential in a block; reports whether it was
  active inside (introspection) and hands the token out after the block;
- ``call``: a gateway call with a credential it was given (``token``, ``path``);
- ``client`` / ``async_client``: ``n`` GETs of ``path`` through ``kontext.client``;
- ``expire_then_call``: a client request held back until its credential expired;
- ``off_gateway``: a client request to another host (must be refused);
- ``gather``: ``n`` concurrent ``arequire`` calls under ``asyncio.gather``;
- ``sees``: which of ``paths`` (kontext's socket, runtime dir, ...) this process can
  reach — under the default (confined) exec, none.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from typing import Any

import httpx

import kontext


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def describe(cred: kontext.Credential) -> dict[str, Any]:
    return {
        "token": cred.token,
        "jti": cred.jti,
        "scopes": list(cred.scopes),
        "target": cred.target,
        "expires_at": cred.expires_at.timestamp(),
        "agent": cred.agent,
        "parent": cred.parent,
        "base_url": cred.base_url,
        "headers_ok": cred.headers == {"Authorization": f"Bearer {cred.token}"},
        "repr": repr(cred),
        "revoked": cred.revoked,
    }


def failure(exc: kontext.KontextError) -> dict[str, Any]:
    return {
        "error": type(exc).__name__,
        "message": str(exc),
        "repr": repr(exc),
        "layer": getattr(exc, "layer", None),
        "command": getattr(exc, "command", None),
    }


def active(cred: kontext.Credential) -> bool:
    issuer = cred.base_url.partition("/gw/")[0]
    answer = httpx.post(f"{issuer}/introspect", data={"token": cred.token}, timeout=30)
    return bool(answer.json()["active"])


def op_require(cmd: dict[str, Any]) -> dict[str, Any]:
    creds = [kontext.require("github", **cmd.get("args", {})) for _ in range(cmd.get("n", 1))]
    return {"creds": [describe(c) for c in creds]}


def op_with(cmd: dict[str, Any]) -> dict[str, Any]:
    with kontext.require("github", **cmd.get("args", {})) as cred:
        inside = active(cred)
    return {"inside": inside, "cred": describe(cred)}


async def op_async_with(cmd: dict[str, Any]) -> dict[str, Any]:
    async with await kontext.arequire("github", **cmd.get("args", {})) as cred:
        inside = active(cred)
    return {"inside": inside, "cred": describe(cred)}


def op_call(cmd: dict[str, Any]) -> dict[str, Any]:
    issuer = cmd["base_url"]
    headers = {"Authorization": f"Bearer {cmd['token']}"}
    answer = httpx.get(issuer + cmd["path"], headers=headers, timeout=30)
    return {"status": answer.status_code, "body": answer.json()}


def op_client(cmd: dict[str, Any]) -> dict[str, Any]:
    with kontext.client("github", timeout=30, **cmd.get("args", {})) as gh:
        answers = [gh.get(cmd["path"]) for _ in range(cmd.get("n", 1))]
    return {"statuses": [a.status_code for a in answers], "titles": [a.json() for a in answers]}


async def op_async_client(cmd: dict[str, Any]) -> dict[str, Any]:
    async with kontext.async_client("github", timeout=30, **cmd.get("args", {})) as gh:
        answers = await asyncio.gather(*(gh.get(cmd["path"]) for _ in range(cmd.get("n", 1))))
    return {"statuses": [a.status_code for a in answers]}


def op_expire_then_call(cmd: dict[str, Any]) -> dict[str, Any]:
    """The first attempt waits, after its credential was set, until that credential
    has expired: what a request stuck in a queue would meet at the gateway."""
    attempts: list[str] = []

    def hold(request: httpx.Request) -> None:
        token = request.headers["Authorization"].partition(" ")[2]
        attempts.append(token)
        if len(attempts) == 1:
            while time.time() < claims(token)["exp"] + 1.5:
                time.sleep(0.2)

    with kontext.client("github", ttl="10s", timeout=60, event_hooks={"request": [hold]}) as gh:
        answer = gh.get(cmd["path"])
    return {"status": answer.status_code, "attempts": len(attempts), "tokens": attempts}


def op_off_gateway(cmd: dict[str, Any]) -> dict[str, Any]:
    with kontext.client("github", timeout=30) as gh:
        gh.get(cmd["url"])
    return {"sent": True}


async def op_gather(cmd: dict[str, Any]) -> dict[str, Any]:
    creds = await asyncio.gather(
        *(kontext.arequire("github", **cmd.get("args", {})) for _ in range(cmd["n"]))
    )
    return {"creds": [describe(c) for c in creds]}


def op_sees(cmd: dict[str, Any]) -> dict[str, Any]:
    seen = {}
    for label, path in cmd["paths"].items():
        try:
            os.stat(path)
        except OSError:
            seen[label] = False
        else:
            seen[label] = True
    with open("/proc/self/uid_map", encoding="ascii") as fh:
        uid_map = fh.read().split()
    return {"seen": seen, "uid_map": uid_map}


SYNC = {
    "require": op_require,
    "with": op_with,
    "call": op_call,
    "client": op_client,
    "expire_then_call": op_expire_then_call,
    "off_gateway": op_off_gateway,
    "sees": op_sees,
}
ASYNC = {"async_with": op_async_with, "async_client": op_async_client, "gather": op_gather}


def answer(cmd: dict[str, Any]) -> dict[str, Any]:
    try:
        if cmd["op"] in ASYNC:
            return asyncio.run(ASYNC[cmd["op"]](cmd))
        return SYNC[cmd["op"]](cmd)
    except kontext.KontextError as exc:
        return failure(exc)


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith(("KONTEXT_", "GITHUB_"))}
    print(json.dumps({"ready": True, "env": env}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(answer(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
