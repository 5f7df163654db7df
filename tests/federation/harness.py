"""A CI job on this machine: a real daemon, a real git checkout, a stand-in CI issuer.

``ci_job`` gives a test a fresh KONTEXT_HOME whose config believes the stand-in
issuer, an empty org policy directory of its own (``KONTEXT_SYSTEM_POLICY_DIR``;
root's under the test's root), and a git repository whose ``main`` commit holds
``.kontext/ci.toml``. The issuer's job names that commit, so ``kontext login
--federate github-actions`` runs exactly as in a GitHub Actions step: CI=true, no
terminal, the token fetched from ``ACTIONS_ID_TOKEN_REQUEST_URL``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Kontext, short_home

from tests.federation.ci_issuer import Issuer, ci_issuer

# The jobs build real git repositories; without git they are skipped, said at the end.
needs_git = pytest.mark.skipif(
    shutil.which("git") is None, reason="git is not installed (apt-get install git)"
)
AGENT = "release-notes"
OTHER_AGENT = "triage"
SCOPE = "github:contents:read"
REPO = "acme/backend"


def policy(issuer: str, **fields: Any) -> str:
    """A ``.kontext/ci.toml`` with one rule for ``acme/backend`` on main (``fields``
    override or add keys; a value of None drops the key)."""
    rule: dict[str, Any] = {
        "id": "release-notes-on-main",
        "issuer": issuer,
        "repository": REPO,
        "refs": ["refs/heads/main"],
        "agents": [AGENT],
        "scopes": [SCOPE],
        "targets": [REPO],
        **fields,
    }
    import tomli_w

    return tomli_w.dumps({"rule": [{k: v for k, v in rule.items() if v is not None}]})


class Repo:
    """A real git repository: commits of whole files, on branches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "ci",
            "GIT_AUTHOR_EMAIL": "ci@example.com",
            "GIT_COMMITTER_NAME": "ci",
            "GIT_COMMITTER_EMAIL": "ci@example.com",
            "HOME": str(self.path),
            "PATH": "/usr/bin:/bin",
        }
        done = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=30,
        )
        return done.stdout.strip()

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            self.git("add", name)
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


@dataclass
class CIJob:
    kx: Kontext
    issuer: Issuer
    repo: Repo
    org_dir: Path

    def login(
        self, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``kontext login --federate github-actions`` as a job step runs it."""
        return self.kx.run(
            "login",
            "--federate",
            "github-actions",
            "--checkout",
            str(self.repo.path),
            *extra,
            env={**self.issuer.env(), **(env or {})},
        )

    def exec(self, agent: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``kontext exec`` in the job: CI=true, no terminal."""
        return self.kx.run("exec", "--agent", agent, *args, env={"CI": "true"}, timeout=60)


def write_config(kx: Kontext, text: str) -> None:
    config = kx.home / "config" / "config.toml"
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    config.write_text(text)


def create_agents(kx: Kontext) -> None:
    kx.ok("agent", "create", AGENT, "--allow", SCOPE, "--allow", "github:pulls:read")
    kx.ok("agent", "create", OTHER_AGENT, "--allow", "github:issues:read")


@contextmanager
def ci_job(
    shape: str = "github",
    *,
    rule: dict[str, Any] | None = None,
    start: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[CIJob]:
    """A job's runner (module docstring); ``start=False`` leaves the daemon to the
    job's first command and the agents to the test."""
    home = short_home()
    org_dir = Path(tempfile.mkdtemp(prefix="kx-org-"))
    org_dir.chmod(0o755)
    repo = Repo(Path(tempfile.mkdtemp(prefix="kx-repo-")))
    kx = Kontext(home)
    kx.env["KONTEXT_SYSTEM_POLICY_DIR"] = str(org_dir)
    kx.env.update(env or {})
    try:
        with ci_issuer(shape) as issuer:
            write_config(kx, f'[ci.issuers]\n"{issuer.url}" = "{shape}"\n')
            issuer.job.sha = repo.commit({".kontext/ci.toml": policy(issuer.url, **(rule or {}))})
            if start:
                kx.start()
                create_agents(kx)
            yield CIJob(kx, issuer, repo, org_dir)
    finally:
        kx.stop()
        for path in (home, org_dir, repo.path):
            shutil.rmtree(path, ignore_errors=True)
