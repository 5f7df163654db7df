"""Where trust rules come from, and why a source was passed over.

Two sources, both out of reach of whoever pushed the commit being built:

1. **The organisation's** ``ci.toml`` beside its Cedar policy, in the system
   policy directory (``/etc/kontext/policy.d``, or ``KONTEXT_SYSTEM_POLICY_DIR``
   where only root can change it — ``kontextd.policy.loader``), a file root owns.
   On a runner the org controls (self-hosted), a job cannot change it.
2. **The repository's** ``.kontext/ci.toml``, read only (a) at the commit the
   token names, proven by git object hashes (``gitproof``) — never from the
   working tree, which a pull request's checkout controls — and (b) only when
   the platform's signed ``ref_protected`` says that ref is protected: its
   history was reviewed as the repository's rules require. Only rules naming
   that very repository count. ``ci.repository_policy = "off"`` leaves only 1.

A branch or pull request that edits ``.kontext/ci.toml`` changes nothing until
it is merged into a protected ref (SECURITY.md "CI federation").
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from kontextd.federation import gitproof, trust
from kontextd.federation.platforms import Workload
from kontextd.federation.refusal import POLICY, PROOF, PROTECTED_REF, Refused
from kontextd.policy import loader

ORG_FILE = "ci.toml"


@dataclass
class Found:
    """The rules read for one workload, where from, and why a source was passed over
    (``(check, reason)``: the first becomes the refusal when no rule matches)."""

    rules: list[trust.Rule] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    passed_over: list[tuple[str, str]] = field(default_factory=list)

    def add(self, rules: list[trust.Rule], **where: Any) -> None:
        self.rules += rules
        self.sources.append({**where, "rules": [r.id for r in rules]})


def org_file() -> str:
    return os.path.join(loader.system_dir().path, ORG_FILE)


def _org(found: Found) -> None:
    path = org_file()
    try:
        with open(path, "rb") as fh:
            data = fh.read(1024 * 1024)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        why = f"the org's trust policy {path} cannot be read ({exc.strerror})"
        raise Refused(POLICY, why) from exc
    unsafe = loader.unsafe_system_file(path)
    if unsafe is not None:  # a file the user planted in root's directory is not the org's
        raise Refused(POLICY, f"the org's trust policy is not trusted: {unsafe}")
    found.add(_parse(data, path), file=path, sha256=hashlib.sha256(data).hexdigest())


def _parse(data: bytes, source: str) -> list[trust.Rule]:
    try:
        return trust.parse(data.decode("utf-8"), source)
    except UnicodeDecodeError as exc:
        raise Refused(POLICY, f"{source} is not UTF-8 text; fix it") from exc
    except trust.PolicyError as exc:  # a broken policy grants nothing, and says why
        raise Refused(POLICY, f"the trust policy is broken: {exc}") from exc


def _repository(found: Found, workload: Workload, proof: Any, setting: str) -> None:
    if workload.repository is None or workload.sha is None:
        return  # another OIDC issuer: no repository to read
    if setting == "off":
        found.passed_over.append((POLICY, "ci.repository_policy is off"))
        return
    if not workload.ref_protected:
        found.passed_over.append(
            (
                PROTECTED_REF,
                f"{workload.ref} is not a protected ref, so its {gitproof.POLICY_PATH} is not "
                "trusted (only a protected ref's reviewed history is)",
            )
        )
        return
    if not isinstance(proof, dict) or not {"commit", "root"} <= set(proof):
        missing = proof.get("missing") if isinstance(proof, dict) else None
        why = str(missing)[:200] if missing else "the CLI sent no git objects"
        found.passed_over.append((PROOF, f"{gitproof.POLICY_PATH} could not be read: {why}"))
        return
    data = gitproof.policy_at(workload.sha, proof)
    source = f"{gitproof.POLICY_PATH}@{workload.sha[:12]}"
    if data is None:
        found.passed_over.append((POLICY, f"{workload.repository} has no {source}"))
        return
    rules = [r for r in _parse(data, source) if r.repository == workload.repository]
    found.add(
        rules,
        file=gitproof.POLICY_PATH,
        repository=workload.repository,
        commit=workload.sha,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def gather(workload: Workload, proof: Any, repository_policy: str) -> Found:
    """Every rule from both sources (module docstring) that could name ``workload``."""
    found = Found()
    _org(found)
    _repository(found, workload, proof, repository_policy)
    return found
