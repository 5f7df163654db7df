"""Read ``.kontext/ci.toml`` at one commit from the job's checkout, as raw git objects.

The daemon does not take this CLI's word for the policy: it hashes each object
itself (``kontextd.federation.gitproof``) from the commit the CI token names.
So this only has to find the objects — with ``git cat-file`` in the checkout,
never the working tree (which a pull request's checkout controls). Replace refs
are switched off (``GIT_NO_REPLACE_OBJECTS``); a planted object fails the
daemon's hash check anyway.
"""

from __future__ import annotations

import base64
import os
import subprocess
from typing import Any

TIMEOUT = 30.0
MAX_OBJECT = 48 * 1024


class Missing(Exception):
    """The objects cannot be read; the message says why (sent to the daemon as-is)."""


def _cat(checkout: str, kind: str, oid: str) -> bytes:
    env = {**os.environ, "GIT_NO_REPLACE_OBJECTS": "1", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(
            ["git", "-C", checkout, "cat-file", kind, oid],
            capture_output=True,
            timeout=TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Missing(f"cannot run git in {checkout} ({type(exc).__name__})") from exc
    if done.returncode != 0:
        what = "commit" if kind == "commit" else f"{kind} object"
        raise Missing(
            f"the {what} {oid[:12]} is not in the checkout {checkout}: check out the commit "
            "being built (actions/checkout without ref:) or fetch it"
        )
    if len(done.stdout) > MAX_OBJECT:
        raise Missing(f"git object {oid[:12]} is over {MAX_OBJECT // 1024} KiB")
    return done.stdout


def _entry(tree: bytes, name: bytes) -> tuple[bytes, str] | None:
    at = 0
    while at < len(tree):
        space = tree.index(b" ", at)
        nul = tree.index(b"\0", space)
        if tree[space + 1 : nul] == name:
            return tree[at:space], tree[nul + 1 : nul + 21].hex()
        at = nul + 21
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def proof(checkout: str, sha: str) -> dict[str, Any]:
    """The commit, its root tree, ``.kontext`` and ``ci.toml`` (as far as they exist),
    base64; or ``{"missing": why}`` when they cannot be read."""
    try:
        commit = _cat(checkout, "commit", sha)
        first = commit.split(b"\n", 1)[0]
        if not first.startswith(b"tree "):
            raise Missing(f"{sha[:12]} is not a commit")
        root = _cat(checkout, "tree", first[5:].decode("ascii"))
        found: dict[str, Any] = {"commit": _b64(commit), "root": _b64(root)}
        folder = _entry(root, b".kontext")
        if folder is None:
            return found
        tree = _cat(checkout, "tree", folder[1])
        found["dir"] = _b64(tree)
        blob = _entry(tree, b"ci.toml")
        if blob is not None:
            found["blob"] = _b64(_cat(checkout, "blob", blob[1]))
        return found
    except Missing as exc:
        return {"missing": str(exc)}
    except ValueError:
        return {"missing": f"a tree object at {sha[:12]} is malformed"}
