"""The CI examples tell the truth: docs/ci/*.yml parse, ask for what federation needs,
their trust policies parse, and both jobs' own steps run as written.

The GitHub workflow's ``run:`` steps and the GitLab job's ``script`` and
``after_script`` (all but installing kontext) are executed in order against the
stand-in GitHub or GitLab, with ``./scripts/release-notes.sh`` replaced by a
command that checks it received a credential — so a step that stops working
fails here, not in a user's first pipeline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from kontextd.federation import trust
from tests.federation.harness import REPO, CIJob, ci_job, needs_git
from tests.upstream.fake_github import API_KEY, FakeGitHub

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs" / "ci"
AGENT_CHECK = (
    f"{sys.executable} -c \"import os; assert len(os.environ['GITHUB_TOKEN']) > 100; "
    "assert os.environ['GITHUB_API_URL'].startswith('http://127.0.0.1:')\""
)

pytestmark = needs_git


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DOCS / name).read_text())
    assert isinstance(data, dict)
    return data


def commented_policy(name: str) -> str:
    """The ``.kontext/ci.toml`` example in a file's leading comments."""
    lines = (DOCS / name).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "#   [[rule]]")
    body = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        body.append(line.removeprefix("#   "))
    return "\n".join(body) + "\n"


def readme_policy() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"```toml\n(# \.kontext/ci\.toml.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


def test_the_policies_in_the_docs_parse() -> None:
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        (rule,) = trust.parse(commented_policy(name), name)
        assert rule.agents == ("release-notes",) and rule.refs == ("refs/heads/main",)
    (rule,) = trust.parse(readme_policy(), "README.md")
    assert rule.session == 45 * 60 and rule.events == ("push", "workflow_dispatch")


def test_the_github_workflow_asks_for_what_federation_needs() -> None:
    flow = load("github-actions.yml")
    assert flow["permissions"]["id-token"] == "write"
    steps = flow["jobs"]["notes"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert "kontext login --federate github-actions" in runs
    assert steps[0]["uses"].startswith("actions/checkout@")  # the named commit is there
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "kontext-audit.jsonl"


def test_the_gitlab_job_asks_for_what_federation_needs() -> None:
    job = load("gitlab-ci.yml")["release-notes"]
    assert job["id_tokens"] == {"KONTEXT_ID_TOKEN": {"aud": "kontext"}}
    assert "kontext login --federate gitlab" in job["script"]
    assert job["artifacts"]["when"] == "always"
    assert job["after_script"] == ["kontext audit export --output kontext-audit.jsonl"]


def test_the_jobs_install_kontext_from_a_pinned_wheel_not_pypis_name() -> None:
    """``kontext`` on PyPI is an unrelated project: a job that ran ``pipx install
    kontext`` would run someone else's code with ``id-token: write``."""
    github = [s["run"] for s in load("github-actions.yml")["jobs"]["notes"]["steps"] if "run" in s]
    gitlab = load("gitlab-ci.yml")["release-notes"]["script"]
    installs = [c for c in github + gitlab if "install" in c and "pip" in c]
    assert len(installs) == 2, installs
    for command in installs:
        assert command.endswith("pipx install ./ci/kontext-*-py3-none-any.whl"), command
        assert not re.search(r"pipx? install (--\S+ )*kontext\b", command), command


def run_steps(job: CIJob, commands: list[str], env: dict[str, str]) -> None:
    """Each command as the platform runs a step: ``sh -e`` in the checkout, in order,
    with the agent's script replaced by ``AGENT_CHECK``; the first failure fails."""
    for command in commands:
        command = command.replace("./scripts/release-notes.sh", AGENT_CHECK)
        done = subprocess.run(
            ["sh", "-ec", command],
            cwd=job.repo.path,
            env={
                **job.kx.env,
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"


def github_at(job: CIJob, gh: FakeGitHub) -> None:
    """GitHub is the one service the test cannot reach: the job's config points the
    integration at the stand-in, whose ``GET /user`` answers for ``API_KEY`` (the
    docs' ``integration connect`` checks the key there first, as on a real runner)."""
    config = job.kx.home / "config" / "config.toml"
    config.write_text(config.read_text() + f'\n[integrations.github]\nbase_url = "{gh.url}"\n')


def exported(job: CIJob) -> str:
    """The audit the job kept as its artifact."""
    return (job.repo.path / "kontext-audit.jsonl").read_text()


def test_the_github_workflows_steps_run_as_written() -> None:
    rule = {"workflows": [".github/workflows/release-notes.yml"], "max_ttl": "15m"}
    with FakeGitHub() as gh, ci_job(start=False, rule=rule) as job:
        github_at(job, gh)
        job.issuer.job.workflow = ".github/workflows/release-notes.yml"
        steps = load("github-actions.yml")["jobs"]["notes"]["steps"]
        for step in steps:
            command = step.get("run")
            if command is None or command.startswith("pipx install"):
                continue
            extra = {k: API_KEY for k in step.get("env", {})}
            run_steps(job, [command], {**job.issuer.env(), "GITHUB_REPOSITORY": REPO, **extra})
        export = exported(job)
        assert '"credential.issued"' in export and '"run_id":"7001"' in export


def test_the_gitlab_jobs_script_runs_as_written() -> None:
    """GitLab's ``script`` then ``after_script``, with the ID token GitLab would put in
    ``KONTEXT_ID_TOKEN`` for the audience the job declares (so the docs' ``aud`` is one
    kontext accepts by default)."""
    rule = {"workflows": [".gitlab-ci.yml"], "max_ttl": "15m"}
    with FakeGitHub() as gh, ci_job("gitlab", start=False, rule=rule) as job:
        github_at(job, gh)
        job.issuer.job.workflow = ".gitlab-ci.yml"
        spec = load("gitlab-ci.yml")["release-notes"]
        (name,) = spec["id_tokens"]
        commands = [c for c in spec["script"] if not c.startswith("pip install")]
        env = {
            "CI": "true",
            "GITLAB_CI": "true",
            name: job.issuer.mint(spec["id_tokens"][name]["aud"]),
            **{k: API_KEY for k in re.findall(r"\$(\w+_TOKEN)\b", str(commands))},
        }
        run_steps(job, [*commands, *spec["after_script"]], env)
        export = exported(job)
        assert '"credential.issued"' in export and '"run_id":"7001"' in export
        assert '"workflow":".gitlab-ci.yml"' in export and env[name] not in export
