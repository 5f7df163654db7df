"""Reading org policy files: find them, parse, validate, give each policy a stable id.

Files are ``*.cedar`` in the system directory (``/etc/kontext/policy.d``) and the
user's ``policy.d`` in the config dir, read in that order, each directory sorted
by name. The system directory is the organisation's: ``KONTEXT_SYSTEM_POLICY_DIR``
adds a directory the user cannot change (root's, all the way up, like OpenSSH's
``safe_path``), read after ``/etc/kontext/policy.d``, never instead of it — else
it is ignored, said at start and recorded — and the files of both must be root's
and writable by no one else, so a user cannot drop or rewrite the org policy by
pointing the variable elsewhere. (Under root the variable replaces the system
directory: root can edit /etc anyway, and the tests need a seam.) A policy's id is its
``@id("...")`` annotation, else ``FILE:LINE``; Cedar itself numbers policies
positionally (``policy0``…) per parse, which is useless across files, so every
file is converted to Cedar's JSON form (EST) and the ids are rewritten before
the sets are merged.

Any error — unreadable file, parse error, schema violation, duplicate id — makes
the whole bundle broken: the org layer then denies everything, naming file and
line, rather than guess which half of an edit was meant (see ``cedar.py``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any

import cedarpy

SYSTEM_DIR = "/etc/kontext/policy.d"
SYSTEM_DIR_ENV = "KONTEXT_SYSTEM_POLICY_DIR"


@dataclass(frozen=True)
class SystemDir:
    """Where the organisation's policy is read from, and why an override was not taken."""

    path: str
    ignored: str | None = None


def system_dir() -> SystemDir:
    """``/etc/kontext/policy.d``, or ``KONTEXT_SYSTEM_POLICY_DIR`` if only root can change it."""
    asked = os.environ.get(SYSTEM_DIR_ENV)
    if not asked or asked == SYSTEM_DIR:
        return SystemDir(SYSTEM_DIR)
    why = not_roots(asked)
    if why is None:
        return SystemDir(asked)
    return SystemDir(
        SYSTEM_DIR,
        f"{SYSTEM_DIR_ENV}={asked} is ignored ({why}); the org policy is read from {SYSTEM_DIR}",
    )


def not_roots(path: str) -> str | None:
    """Why the directory ``path`` could be changed by someone other than root, or None.

    It and every directory above it must be owned by root and writable by no one
    else; a sticky directory (``/tmp``) may be writable by all, as no one can move
    another's entry out of it. Under root, None: root needs no protection from itself."""
    if os.getuid() == 0:
        return None
    real = os.path.realpath(path)
    try:
        if not stat.S_ISDIR(os.stat(real).st_mode):
            return f"{real} is not a directory"
    except OSError as exc:
        return f"{real}: {exc.strerror}"
    current = real
    while True:
        info = os.stat(current)
        if info.st_uid != 0:
            return f"{current} is owned by uid {info.st_uid}, not root"
        sticky = current != real and info.st_mode & stat.S_ISVTX
        if info.st_mode & 0o022 and not sticky:
            return f"others than root can write to {current}"
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def system_dirs() -> list[str]:
    """The directories of the organisation's policy, in reading order.

    For a daemon run by a user, ``/etc/kontext/policy.d`` is always read: a root-owned
    ``KONTEXT_SYSTEM_POLICY_DIR`` adds its files after it and never replaces it, or
    pointing the variable at any root-owned directory without policy files
    (``/usr/share``) would drop the org's policy (issue 17 item 8). Under root the
    variable is taken as given."""
    asked = system_dir().path
    if os.getuid() == 0 or os.path.realpath(asked) == os.path.realpath(SYSTEM_DIR):
        return [asked]
    return [SYSTEM_DIR, asked]


def policy_dirs(config_dir: str) -> list[str]:
    """The system directories (``system_dirs``), then the user's: ``CONFIG/policy.d``."""
    return [*system_dirs(), os.path.join(config_dir, "policy.d")]


def unsafe_system_file(path: str) -> str | None:
    """Why a file in the system directory is not the organisation's to trust, or None."""
    if os.getuid() == 0:
        return None
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror})"
    if info.st_uid != 0:
        return f"{path}: an org policy file must be root's, not uid {info.st_uid}'s"
    if info.st_mode & 0o022:
        return f"{path}: an org policy file must not be writable by others than root"
    return None


def policy_files(dirs: list[str]) -> list[str]:
    """Every ``*.cedar`` file in ``dirs``, in order (missing directories are skipped)."""
    found: list[str] = []
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise OSError(f"{directory}: cannot list ({exc.strerror})") from exc
        found += [os.path.join(directory, n) for n in names if n.endswith(".cedar")]
    return found


def snapshot(dirs: list[str]) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of every policy file, to notice edits cheaply."""
    result = []
    for path in policy_files(dirs):
        try:
            info = os.stat(path)
        except OSError:
            continue
        result.append((path, info.st_mtime_ns, info.st_size))
    return tuple(result)


@dataclass(frozen=True)
class Statement:
    """One policy's source text and the line it starts on."""

    line: int
    text: str


def split_statements(text: str) -> list[Statement]:
    """Split Cedar source at top-level ``;``, skipping strings and ``//`` comments."""
    out: list[Statement] = []
    start, line, start_line, i = 0, 1, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            line += 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        elif ch == '"':
            i = _string_end(text, i)
            continue
        elif not ch.isspace() and not start_line:
            start_line = line
        if ch == ";":
            out.append(Statement(start_line, text[start : i + 1]))
            start, start_line = i + 1, 0
        i += 1
    if start_line:
        out.append(Statement(start_line, text[start:]))
    return out


def _string_end(text: str, i: int) -> int:
    i += 1
    while i < len(text) and text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return i + 1


@dataclass
class Bundle:
    """The result of loading every policy file: a policy set, or errors."""

    files: list[str] = field(default_factory=list)
    policies: dict[str, Any] = field(default_factory=dict)  # id -> EST
    where: dict[str, str] = field(default_factory=dict)  # id -> FILE:LINE
    errors: list[str] = field(default_factory=list)
    policy_set: cedarpy.PolicySet | None = None
    hashes: dict[str, str] = field(default_factory=dict)  # path -> SHA-256 of its bytes

    def reads(self, attribute: str) -> bool:
        """Whether some policy reads ``attribute`` (of the context, or anything): a
        fact that costs a system call is established only when a policy asks for it."""
        return f'"attr": "{attribute}"' in self._text

    @functools.cached_property
    def _text(self) -> str:
        return json.dumps(self.policies)  # read after ``load``; the bundle is not changed again


def load(dirs: list[str], schema: cedarpy.Schema) -> Bundle:
    """Load and validate every policy file under ``dirs``."""
    bundle = Bundle()
    try:
        bundle.files = policy_files(dirs)
    except OSError as exc:
        bundle.errors.append(str(exc))
        return bundle
    system = {os.path.normpath(d) for d in dirs[:-1]}  # every directory but the user's
    for path in bundle.files:
        in_system = os.path.dirname(path) in system
        unsafe = unsafe_system_file(path) if in_system else None
        if unsafe is not None:
            bundle.errors.append(unsafe)
            continue
        _load_file(bundle, path, schema)
    if bundle.files and not bundle.errors:
        combined = {"staticPolicies": bundle.policies, "templates": {}, "templateLinks": []}
        try:
            bundle.policy_set = cedarpy.PolicySet.from_json_str(json.dumps(combined))
        except ValueError as exc:
            bundle.errors.append(f"cannot combine the policy files: {exc}")
    return bundle


def _load_file(bundle: Bundle, path: str, schema: cedarpy.Schema) -> None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        bundle.errors.append(f"{path}: cannot read ({exc})")
        return
    bundle.hashes[path] = hashlib.sha256(raw).hexdigest()
    statements = split_statements(text)
    try:
        est = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        bundle.errors.append(f"{path}:{_failing_line(statements)}: {exc}")
        return
    if est.get("templates"):
        bundle.errors.append(f"{path}: policy templates (?principal, ?resource) are not supported")
        return
    positional = est.get("staticPolicies", {})
    lines = {f"policy{n}": s.line for n, s in enumerate(statements)}
    # Cedar reports a schema error once per action the policy could apply to: keep the first.
    reported: set[str] = set()
    for error in cedarpy.validate_policies(text, schema).errors:
        if error.policy_id not in reported:
            reported.add(error.policy_id)
            message = error.error.replace(f"for policy `{error.policy_id}`, ", "")
            bundle.errors.append(f"{path}:{lines.get(error.policy_id, 1)}: {message}")
    for pid, policy in positional.items():
        _add(bundle, path, lines.get(pid, 1), policy)


def _add(bundle: Bundle, path: str, line: int, policy: dict[str, Any]) -> None:
    where = f"{path}:{line}"
    ident = policy.get("annotations", {}).get("id") or f"{os.path.basename(path)}:{line}"
    if ident in bundle.policies:
        first = bundle.where[ident]
        bundle.errors.append(f"{where}: policy id {ident!r} is already used at {first}")
        return
    bundle.policies[ident] = policy
    bundle.where[ident] = where


def _failing_line(statements: list[Statement]) -> int:
    """The line of the first statement Cedar cannot parse on its own."""
    for statement in statements:
        try:
            cedarpy.policies_to_json_str(statement.text)
        except ValueError:
            return statement.line
    return statements[-1].line if statements else 1
