"""The CI trust policy: which workload may use which agents, scopes and targets, how long.

A file of rules (``.kontext/ci.toml`` in the repository, ``ci.toml`` in the org's
policy directory), each naming a workload and what it may have::

    [[rule]]
    id = "release-notes"                                    # named in every audit event
    issuer = "https://token.actions.githubusercontent.com"
    repository = "acme/backend"
    refs = ["refs/heads/main", "refs/tags/v*"]              # exact, or a prefix ending in *
    workflows = [".github/workflows/release.yml"]           # optional
    environments = ["production"]                           # optional
    events = ["push", "workflow_dispatch"]                  # optional (see below)
    agents = ["release-notes"]
    scopes = ["github:contents:read"]
    targets = ["acme/backend"]                              # ["*"]: any target, or none
    max_ttl = "15m"                                         # optional: per credential
    session = "30m"                                         # optional: see session.py

A rule for another OIDC issuer names ``subject`` (the token's exact ``sub``)
instead of ``repository`` and ``refs``. Nothing is granted that a rule does not
name: every list is matched exactly (refs may end in ``*``), an absent optional
list matches anything — except ``events``, which without a list never matches
``pull_request_target`` or ``workflow_run``: those run the protected branch's
workflow for someone who could not push to it, so a rule must name them.

Unknown keys, bad values or a missing field refuse the whole file, naming it and
the rule (TOML, not Cedar: a rule is a record of exact fields, like a PyPI
trusted publisher or a cloud's federated-credential subject; Cedar stays the
org's layer over everything, CI sessions included).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from typing import Any

from kontext.common import validate
from kontext.common.ci_config import issuer_url
from kontextd.federation.platforms import Workload

# Events in which a protected ref's workflow runs on behalf of someone who could
# not push to it (GitHub's "pwn request" classes): matched only when named.
NAMED_ONLY_EVENTS = frozenset({"pull_request_target", "workflow_run"})
MAX_RULES = 100
MAX_ITEMS = 64
ANY_TARGET = "*"
ALLOWED_KEYS = frozenset(
    {
        "id", "issuer", "repository", "refs", "subject", "workflows", "environments",
        "events", "agents", "scopes", "targets", "max_ttl", "session",
    }
)  # fmt: skip


class PolicyError(ValueError):
    """A trust policy file that cannot be used; the message names file and rule."""


@dataclass(frozen=True)
class Rule:
    """One rule: the workload it names, and what that workload may have."""

    id: str
    source: str  # where it was read: ".kontext/ci.toml@c040cae" or a file path
    issuer: str
    agents: tuple[str, ...]
    scopes: tuple[str, ...]
    targets: tuple[str, ...]
    repository: str | None = None
    refs: tuple[str, ...] = ()
    subject: str | None = None
    workflows: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    max_ttl: int | None = None
    session: int | None = None

    @property
    def name(self) -> str:
        """``.kontext/ci.toml@c040cae#release-notes``: the rule in audit and messages."""
        return f"{self.source}#{self.id}"

    def misses(self, workload: Workload) -> str | None:
        """Why this rule does not name ``workload`` (None: it does)."""
        if workload.issuer != self.issuer:
            return f"issuer {self.issuer}"
        if self.subject is not None and workload.subject != self.subject:
            return f"subject {self.subject}"
        if self.repository is not None and workload.repository != self.repository:
            return f"repository {self.repository}"
        if self.refs and not any(_ref_matches(p, workload.ref) for p in self.refs):
            return f"ref {' or '.join(self.refs)}"
        for field, allowed, value in (
            ("workflow", self.workflows, workload.workflow),
            ("environment", self.environments, workload.environment),
        ):
            if allowed and value not in allowed:
                return f"{field} {' or '.join(allowed)}"
        if self.events and workload.event not in self.events:
            return f"event {' or '.join(self.events)}"
        if not self.events and workload.event in NAMED_ONLY_EVENTS:
            return f"event {workload.event} named explicitly"
        return None

    def covers_target(self, target: str | None) -> bool:
        if ANY_TARGET in self.targets:
            return True
        return target is not None and target.lower() in {t.lower() for t in self.targets}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Rule:
        tuples = {k: tuple(v) for k, v in value.items() if isinstance(v, list)}
        return cls(**{**value, **tuples})


def _ref_matches(pattern: str, ref: str | None) -> bool:
    if ref is None:
        return False
    if pattern.endswith("*"):
        return ref.startswith(pattern[:-1])
    return ref == pattern


def _strings(table: dict[str, Any], key: str, *, required: bool = False) -> tuple[str, ...]:
    value = table.get(key)
    if value is None and not required:
        return ()
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= MAX_ITEMS
        or not all(isinstance(v, str) and 0 < len(v) <= 255 and v.isprintable() for v in value)
    ):
        raise ValueError(f"{key} must be a list of 1-{MAX_ITEMS} strings")
    return tuple(value)


def _text(table: dict[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 255):
        raise ValueError(f"{key} must be a string")
    return value


def _duration(table: dict[str, Any], key: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f'{key} must be a duration such as "15m"')
    try:
        return validate.duration(value, lower=validate.MIN_TTL, upper=validate.MAX_TTL)
    except validate.InvalidInput as exc:
        raise ValueError(f"{key}: {exc}") from exc


def _refs(table: dict[str, Any]) -> tuple[str, ...]:
    refs = _strings(table, "refs")
    for ref in refs:
        if not ref.startswith("refs/") or "*" in ref[:-1]:
            raise ValueError(f"refs: {ref!r} must be a full ref (refs/heads/…), * only at its end")
    return refs


def _checked(values: tuple[str, ...], check: Any, key: str) -> tuple[str, ...]:
    try:
        for value in values:
            check(value)
    except validate.InvalidInput as exc:
        raise ValueError(f"{key}: {exc}") from exc
    return values


def _rule(table: Any, source: str, index: int) -> Rule:
    if not isinstance(table, dict):
        raise ValueError("must be a table")
    unknown = sorted(set(table) - ALLOWED_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    rule_id = _text(table, "id")
    if rule_id is None or not validate.AGENT_NAME.fullmatch(rule_id):
        raise ValueError("id must be 1-63 lowercase letters, digits and dashes")
    issuer = issuer_url(table.get("issuer"))
    repository, subject = _text(table, "repository"), _text(table, "subject")
    refs = _refs(table)
    if (repository is None) == (subject is None):
        raise ValueError("name either repository (with refs) or subject")
    if repository is not None and not refs:
        raise ValueError("a rule naming a repository must name its refs")
    targets = _strings(table, "targets", required=True)
    _checked(tuple(t for t in targets if t != ANY_TARGET), validate.target, "targets")
    return Rule(
        id=rule_id,
        source=source,
        issuer=issuer,
        agents=_checked(_strings(table, "agents", required=True), validate.agent_name, "agents"),
        scopes=_checked(_strings(table, "scopes", required=True), validate.scope, "scopes"),
        targets=targets,
        repository=repository,
        refs=refs,
        subject=subject,
        workflows=_strings(table, "workflows"),
        environments=_strings(table, "environments"),
        events=_strings(table, "events"),
        max_ttl=_duration(table, "max_ttl"),
        session=_duration(table, "session"),
    )


def parse(text: str, source: str) -> list[Rule]:
    """Every rule of a trust policy file; ``PolicyError`` names the first problem."""
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise PolicyError(f"{source}: not valid TOML ({exc})") from exc
    unknown = sorted(set(raw) - {"rule"})
    if unknown:
        raise PolicyError(f"{source}: unknown key {unknown[0]!r}; a trust policy has [[rule]]s")
    tables = raw.get("rule", [])
    if not isinstance(tables, list) or len(tables) > MAX_RULES:
        raise PolicyError(f"{source}: [[rule]] must be an array of at most {MAX_RULES} tables")
    rules: list[Rule] = []
    for index, table in enumerate(tables, start=1):
        try:
            rule = _rule(table, source, index)
        except ValueError as exc:
            name = table.get("id") if isinstance(table, dict) else None
            which = f"rule {index}" + (f" ({str(name)[:40]!r})" if name else "")
            raise PolicyError(f"{source}: {which}: {exc}") from exc
        if any(r.id == rule.id for r in rules):
            raise PolicyError(f"{source}: rule id {rule.id!r} is used twice")
        rules.append(rule)
    return rules
