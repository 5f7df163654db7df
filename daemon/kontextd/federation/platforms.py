"""What each CI platform's token says about the workload, checked and normalised.

A ``Workload`` is read from claims whose signature, issuer, audience and times
``verify`` has already checked. Each platform's reader requires the claims that
identify the job (repository, ref, commit, workflow, run) and checks that they
agree with each other (``sub`` is built from them), so a rule about a repository
and ref matches only a token that says exactly that.

- GitHub Actions (docs.github.com, "OpenID Connect reference"): ``repository``,
  ``ref``, ``sha``, ``workflow_ref`` (``OWNER/REPO/PATH@REF``), ``event_name``,
  ``run_id``, ``run_attempt``; ``ref_protected`` ("true"), ``environment``,
  ``actor``. ``sub`` begins ``repo:OWNER/REPO:``.
- GitLab CI ``id_tokens`` (docs.gitlab.com, "ID token authentication"):
  ``project_path``, ``ref`` + ``ref_type`` (or ``ref_path``), ``sha``,
  ``pipeline_source``, ``pipeline_id``, ``job_id``; ``ci_config_ref_uri``,
  ``ref_protected``, ``environment``, ``user_login``. ``sub`` is
  ``project_path:PATH:ref_type:TYPE:ref:REF``.
- Any other OIDC issuer: ``sub`` only; rules name it exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kontext.common.ci_config import GITHUB, GITLAB, OIDC
from kontextd.federation.refusal import CLAIMS, Refused

# What each platform signs with (its discovery document's
# id_token_signing_alg_values_supported); anything else is refused before a key is
# looked up (DESIGN.md rule 5: algorithms pinned). Another OIDC issuer may use ES256.
ALGORITHMS = {GITHUB: ("RS256",), GITLAB: ("RS256",), OIDC: ("RS256", "ES256", "PS256")}
PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")
HEX = frozenset("0123456789abcdef")
MAX_TEXT = 255


@dataclass(frozen=True)
class Workload:
    """Who the token says is running: the platform's facts about one CI job."""

    platform: str
    issuer: str
    subject: str
    repository: str | None = None
    ref: str | None = None
    ref_protected: bool = False
    sha: str | None = None
    workflow: str | None = None  # the workflow (pipeline config) file's path
    event: str | None = None
    environment: str | None = None
    run_id: str | None = None
    run_attempt: str | None = None  # GitHub's attempt; GitLab's job id
    actor: str | None = None

    @property
    def user(self) -> str:
        """``ci:github:acme/backend@refs/heads/main`` — the session's user."""
        if self.repository is not None and self.ref is not None:
            return f"ci:{self.platform}:{self.repository}@{self.ref}"
        return f"ci:{self.platform}:{self.issuer}#{self.subject}"

    def audit(self) -> dict[str, Any]:
        """The claims kept in the session and in every audit event (no None values)."""
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        fields["id"] = self.user
        return fields

    def describe(self) -> str:
        """One phrase for messages: repository, ref, workflow and event, as known."""
        parts = [self.user.removeprefix(f"ci:{self.platform}:")]
        if self.workflow:
            parts.append(f"workflow {self.workflow}")
        if self.event:
            parts.append(f"event {self.event}")
        if self.environment:
            parts.append(f"environment {self.environment}")
        return ", ".join(parts)


def text(claims: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A claim that must be a short printable string."""
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # some issuers send ids as numbers
    if not isinstance(value, str) or not value:
        raise Refused(CLAIMS, f"the token has no {name} claim (a string)")
    if len(value) > MAX_TEXT or not value.isprintable():
        raise Refused(CLAIMS, f"the token's {name} claim is not a short printable string")
    return value


def _path(claims: dict[str, Any], name: str) -> str:
    value = str(text(claims, name))
    if not set(value) <= PATH_CHARS or "//" in value or value.startswith("/") or ".." in value:
        raise Refused(CLAIMS, f"the token's {name} claim {value!r} is not a repository path")
    return value


def _digits(claims: dict[str, Any], name: str) -> str:
    value = str(text(claims, name))
    if not value.isdigit():
        raise Refused(CLAIMS, f"the token's {name} claim must be a number, not {value!r}")
    return value


def _sha(claims: dict[str, Any]) -> str:
    value = str(text(claims, "sha"))
    if len(value) not in (40, 64) or not set(value) <= HEX:
        raise Refused(CLAIMS, "the token's sha claim is not a git commit id")
    return value


def _ref(value: str) -> str:
    if not value.startswith("refs/") or " " in value:
        raise Refused(CLAIMS, f"the token's ref {value!r} is not a full git ref (refs/…)")
    return value


def _flag(claims: dict[str, Any], name: str) -> bool:
    # Both platforms send "true"/"false" strings; a boolean is read the same.
    return claims.get(name) in (True, "true")


def github(issuer: str, claims: dict[str, Any]) -> Workload:
    repository = _path(claims, "repository")
    subject = str(text(claims, "sub"))
    if not subject.startswith(f"repo:{repository}:"):
        raise Refused(CLAIMS, f"the token's sub does not name its repository {repository}")
    ref = _ref(str(text(claims, "ref")))
    workflow_ref = str(text(claims, "workflow_ref"))
    path, at, _ = workflow_ref.removeprefix(f"{repository}/").rpartition("@")
    if not workflow_ref.startswith(f"{repository}/") or not at or not path:
        raise Refused(CLAIMS, "the token's workflow_ref does not name a workflow of its repository")
    return Workload(
        platform=GITHUB,
        issuer=issuer,
        subject=subject,
        repository=repository,
        ref=ref,
        ref_protected=_flag(claims, "ref_protected"),
        sha=_sha(claims),
        workflow=path,
        event=text(claims, "event_name"),
        environment=text(claims, "environment", required=False),
        run_id=_digits(claims, "run_id"),
        run_attempt=_digits(claims, "run_attempt"),
        actor=text(claims, "actor", required=False),
    )


def _gitlab_ref(claims: dict[str, Any]) -> str:
    ref_path = text(claims, "ref_path", required=False)
    if ref_path is not None:
        return _ref(ref_path)
    kind = text(claims, "ref_type")
    prefix = {"branch": "refs/heads/", "tag": "refs/tags/"}.get(str(kind))
    if prefix is None:
        raise Refused(CLAIMS, f"the token's ref_type {kind!r} is neither branch nor tag")
    return _ref(prefix + str(text(claims, "ref")))


def gitlab(issuer: str, claims: dict[str, Any]) -> Workload:
    project = _path(claims, "project_path")
    subject = str(text(claims, "sub"))
    if not subject.startswith(f"project_path:{project}:"):
        raise Refused(CLAIMS, f"the token's sub does not name its project {project}")
    return Workload(
        platform=GITLAB,
        issuer=issuer,
        subject=subject,
        repository=project,
        ref=_gitlab_ref(claims),
        ref_protected=_flag(claims, "ref_protected"),
        sha=_sha(claims),
        workflow=_gitlab_config(claims, project),
        event=text(claims, "pipeline_source"),
        environment=text(claims, "environment", required=False),
        run_id=_digits(claims, "pipeline_id"),
        run_attempt=_digits(claims, "job_id"),
        actor=text(claims, "user_login", required=False),
    )


def _gitlab_config(claims: dict[str, Any], project: str) -> str | None:
    """``gitlab.com/GROUP/PROJECT//.gitlab-ci.yml@refs/heads/main`` → ``.gitlab-ci.yml``
    (the pipeline's config file, when it is the project's own)."""
    uri = text(claims, "ci_config_ref_uri", required=False)
    if uri is None or f"/{project}//" not in uri:
        return None
    return uri.split(f"/{project}//", 1)[1].rpartition("@")[0] or None


def oidc(issuer: str, claims: dict[str, Any]) -> Workload:
    return Workload(platform=OIDC, issuer=issuer, subject=str(text(claims, "sub")))


READERS = {GITHUB: github, GITLAB: gitlab, OIDC: oidc}


def workload(platform: str, issuer: str, claims: dict[str, Any]) -> Workload:
    """The workload the verified ``claims`` describe, per ``platform``'s shape."""
    return READERS[platform](issuer, claims)


def claimed(claims: dict[str, Any]) -> dict[str, str]:
    """A refused token's unverified claims, for its audit event: only the names that
    identify a job, each cut short (they are what the token said, not facts)."""
    names = (
        "iss", "sub", "aud", "repository", "project_path", "ref", "workflow_ref",
        "event_name", "pipeline_source", "run_id", "run_attempt", "pipeline_id", "job_id",
    )  # fmt: skip
    out = {}
    for name in names:
        value = claims.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            out[name] = str(value)[:120]
    return out
