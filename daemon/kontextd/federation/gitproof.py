"""The repository's trust policy at exactly the commit a CI token names, proven by hashes.

The CLI reads four git objects from the job's checkout — the commit, its root
tree, the ``.kontext`` tree and the ``ci.toml`` blob — and sends their raw bytes.
Each object's id is the SHA-1 of ``TYPE LEN\\0BYTES`` (git's object format), so
the daemon checks the chain itself: the commit hashes to the token's ``sha``,
names the root tree, which names ``.kontext``, which names ``ci.toml``. Whatever
the working tree holds (a fork's edit, a file changed by an earlier step) and
whatever ``.git`` says (replace refs, planted objects), only the bytes of that
commit pass. No git runs in the daemon and no path from the request is read.

A commit without the file is proven too (its trees show the name is absent).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from kontextd.federation.refusal import PROOF, Refused

POLICY_DIR = b".kontext"
POLICY_FILE = b"ci.toml"
POLICY_PATH = ".kontext/ci.toml"
MAX_OBJECT = 48 * 1024  # the control API's body limit is 64 KiB, base64 included
TREE_MODE = b"40000"
FILE_MODES = (b"100644", b"100755")  # a symlink (120000) is not the policy


def object_id(kind: bytes, data: bytes) -> str:
    """Git's SHA-1 object id of ``data`` as a ``kind`` (commit, tree, blob)."""
    # SHA-1 because git names objects by it (a collision-detecting SHA-1 in git
    # itself); SECURITY.md says what this does not promise.
    header = b"%s %d\0" % (kind, len(data))
    return hashlib.sha1(header + data, usedforsecurity=True).hexdigest()  # noqa: S324


def _object(proof: dict[str, Any], name: str, kind: bytes, expected: str) -> bytes:
    raw = proof.get(name)
    if not isinstance(raw, str) or len(raw) > MAX_OBJECT * 4 // 3 + 4:
        raise Refused(PROOF, f"the proof has no {name} object (or it is too large)")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused(PROOF, f"the proof's {name} object is not base64") from exc
    if object_id(kind, data) != expected:
        raise Refused(PROOF, f"the proof's {name} object does not hash to {expected[:12]}")
    return data


def _tree_of(commit: bytes) -> str:
    first = commit.split(b"\n", 1)[0]
    if not first.startswith(b"tree ") or len(first) != 45:
        raise Refused(PROOF, "the commit object does not begin with its tree")
    return first[5:].decode("ascii")


def entry(tree: bytes, name: bytes) -> tuple[bytes, str] | None:
    """(mode, object id) of ``name`` in a raw tree object, or None."""
    at = 0
    while at < len(tree):
        space = tree.index(b" ", at)
        nul = tree.index(b"\0", space)
        if nul + 21 > len(tree):
            raise Refused(PROOF, "a tree object is truncated")
        if tree[space + 1 : nul] == name:
            return tree[at:space], tree[nul + 1 : nul + 21].hex()
        at = nul + 21
    return None


def _entry(tree: bytes, name: bytes) -> tuple[bytes, str] | None:
    try:
        return entry(tree, name)
    except ValueError as exc:  # no space or NUL where git puts them
        raise Refused(PROOF, "a tree object is malformed") from exc


def policy_at(sha: str, proof: dict[str, Any]) -> bytes | None:
    """The bytes of ``.kontext/ci.toml`` at commit ``sha`` (None: that commit has no
    such file), if ``proof`` proves them; else ``Refused`` (check ``proof``)."""
    if len(sha) != 40:
        raise Refused(PROOF, "only SHA-1 repositories can prove their policy (sha is not 40 hex)")
    commit = _object(proof, "commit", b"commit", sha)
    root = _object(proof, "root", b"tree", _tree_of(commit))
    found = _entry(root, POLICY_DIR)
    if found is None:
        return None
    mode, dir_id = found
    if mode != TREE_MODE:
        raise Refused(PROOF, f"{POLICY_DIR.decode()} at {sha[:12]} is not a directory")
    folder = _object(proof, "dir", b"tree", dir_id)
    found = _entry(folder, POLICY_FILE)
    if found is None:
        return None
    mode, blob_id = found
    if mode not in FILE_MODES:
        raise Refused(PROOF, f"{POLICY_PATH} at {sha[:12]} is not a regular file")
    return _object(proof, "blob", b"blob", blob_id)
