"""Where the trust policy is read from, and the attacks on it.

The attacker here is whoever can open a pull request or push a branch: they
control the commit being built and so the job's working tree — above all
``.kontext/ci.toml`` in it. The policy is read only from a protected ref's
commit, by the hashes of its git objects, so their edit never counts.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import KONTEXT, api_audit, one_line_error

from tests.federation.harness import (
    AGENT,
    OTHER_AGENT,
    REPO,
    SCOPE,
    CIJob,
    ci_job,
    needs_git,
    policy,
    write_config,
)

REFUSED = 18
WIDENED = {
    "scopes": [SCOPE, "github:pulls:read"],
    "agents": [AGENT, OTHER_AGENT],
    "targets": ["*"],
    "refs": ["refs/*"],
    "events": ["push", "pull_request", "pull_request_target", "workflow_run"],
}

pytestmark = needs_git


@pytest.fixture
def job() -> Iterator[CIJob]:
    with ci_job() as made:
        yield made


def fork_commit(job: CIJob) -> str:
    """A pull request's head: the reviewed commit plus a widened .kontext/ci.toml,
    checked out as the job's working tree (as a pull_request_target job that checks
    out the head does)."""
    job.repo.git("checkout", "-q", "-b", "fork")
    sha = job.repo.commit({".kontext/ci.toml": policy(job.issuer.url, **WIDENED)}, "widen")
    assert "pull_request_target" in (job.repo.path / ".kontext/ci.toml").read_text()
    return sha


def head_of(ref: str) -> dict[str, str]:
    return {
        "ref": ref,
        "sub": f"repo:{REPO}:ref:{ref}",
        "workflow_ref": f"{REPO}/.github/workflows/ci.yml@{ref}",
    }


def login_as(job: CIJob, **claims: object) -> subprocess.CompletedProcess[str]:
    job.issuer.answer = job.issuer.mint(**claims)
    try:
        return job.login()
    finally:
        job.issuer.answer = None


def test_a_fork_pull_request_cannot_widen_its_own_trust(job: CIJob) -> None:
    reviewed = job.issuer.job.sha
    head = fork_commit(job)

    # pull_request_target: the base branch's identity, the fork's code checked out.
    line = one_line_error(login_as(job, event_name="pull_request_target"), REFUSED)
    assert line.startswith("kontext: federation refused (policy): ")
    assert "event pull_request_target" in line

    # Once main (reviewed) names pull_request_target, the job logs in — with main's
    # rules, not the fork's: its extra scope, agent and targets stay refused.
    job.repo.git("checkout", "-q", "main")
    reviewed = job.repo.commit(
        {".kontext/ci.toml": policy(job.issuer.url, events=["push", "pull_request_target"])}
    )
    job.repo.git("checkout", "-q", "fork")
    assert "workflow_run" in (job.repo.path / ".kontext/ci.toml").read_text()
    login = login_as(job, event_name="pull_request_target", sha=reviewed)
    assert login.returncode == 0, login.stderr
    for agent, args in (
        (AGENT, ("--scope", "github:pulls:read", "--target", REPO)),
        (AGENT, ("--scope", SCOPE, "--target", "acme/other")),
        (OTHER_AGENT, ()),
    ):
        ran = job.exec(agent, *args, "--", "true")
        assert ran.returncode == 122, ran.stderr
    started = next(e for e in reversed(api_audit(job.kx)) if e["event"] == "session.started")
    assert started["policy"][0]["commit"] == reviewed != head

    # pull_request (or a pushed branch): the fork's own commit, an unprotected ref.
    for ref in ("refs/pull/7/merge", "refs/heads/fork"):
        proc = login_as(job, sha=head, ref_protected="false", **head_of(ref))
        line = one_line_error(proc, REFUSED)
        assert line.startswith("kontext: federation refused (protected-ref): ")
        assert f"{ref} is not a protected ref" in line
    refusals = [e for e in api_audit(job.kx) if e["event"] == "federation.refused"]
    assert [e["check"] for e in refusals] == ["policy", "protected-ref", "protected-ref"]


def test_a_checkout_without_the_named_commit_reads_no_policy(job: CIJob) -> None:
    head = fork_commit(job)
    shallow = Path(tempfile.mkdtemp(prefix="kx-shallow-"))
    try:
        subprocess.run(
            [
                "git",
                "clone",
                "-q",
                "--depth",
                "1",
                "-b",
                "fork",
                f"file://{job.repo.path}",
                str(shallow),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        proc = job.kx.run(
            "login", "--federate", "github-actions", "--checkout", str(shallow),
            env=job.issuer.env(),
        )  # fmt: skip
        line = one_line_error(proc, REFUSED)
        assert line.startswith("kontext: federation refused (proof): ")
        assert f"{job.issuer.job.sha[:12]} is not in the checkout" in line
        assert head[:12] not in line
    finally:
        shutil.rmtree(shallow, ignore_errors=True)


def test_replace_refs_in_the_checkout_do_not_change_the_policy(job: CIJob) -> None:
    """``git replace`` makes the named commit show the fork's tree to most git
    commands; the CLI reads without replacements and the daemon hashes what it gets."""
    reviewed = job.issuer.job.sha
    head = fork_commit(job)
    job.repo.git("replace", reviewed, head)
    assert "pull_request_target" in job.repo.git("show", f"{reviewed}:.kontext/ci.toml")
    assert job.login().returncode == 0
    ran = job.exec(OTHER_AGENT, "--", "true")
    assert ran.returncode == 122 and "no trust rule lets" in ran.stderr


def test_objects_that_do_not_hash_to_the_commit_are_refused(job: CIJob) -> None:
    """A same-uid process speaking to the socket itself, with the fork's objects as
    the proof for the reviewed commit the (genuine) token names."""
    fork_commit(job)
    token = job.issuer.mint()
    cat = lambda kind, oid: base64.b64encode(  # noqa: E731
        subprocess.run(
            ["git", "-C", str(job.repo.path), "cat-file", kind, oid],
            capture_output=True, check=True,
        ).stdout
    ).decode()  # fmt: skip
    head = job.repo.git("rev-parse", "HEAD")
    tree = job.repo.git("rev-parse", "HEAD^{tree}")
    proof = {"commit": cat("commit", head), "root": cat("tree", tree)}
    with job.kx.control() as api:
        answer = api.post(
            "/v1/session/federate", json={"platform": "github", "token": token, "proof": proof}
        )
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "federation_refused"
    assert error["message"].startswith("federation refused (proof): ")
    assert api_audit(job.kx, n=1)[0]["check"] == "proof"


def test_a_repository_policy_names_only_its_own_repository(job: CIJob) -> None:
    job.repo.commit({".kontext/ci.toml": policy(job.issuer.url, repository="acme/other")})
    job.issuer.job.sha = job.repo.git("rev-parse", "HEAD")
    line = one_line_error(job.login(), REFUSED)
    assert "(policy)" in line and "(0 rules)" in line


def test_a_broken_policy_grants_nothing_and_says_where(job: CIJob) -> None:
    text = policy(job.issuer.url).replace('id = "release-notes-on-main"', 'id = "x"\nscope = 1')
    job.issuer.job.sha = job.repo.commit({".kontext/ci.toml": text})
    line = one_line_error(job.login(), REFUSED)
    assert line.startswith("kontext: federation refused (policy): the trust policy is broken: ")
    assert "rule 1 ('x'): unknown key 'scope'" in line


def test_the_orgs_pinned_policy_applies_and_the_repository_can_be_switched_off(
    job: CIJob,
) -> None:
    write_config(
        job.kx,
        f'[ci]\nrepository_policy = "off"\n[ci.issuers]\n"{job.issuer.url}" = "github"\n',
    )
    job.kx.ok("config", "reload")
    line = one_line_error(job.login(), REFUSED)
    assert "ci.repository_policy is off" in line
    org = policy(job.issuer.url, id="org-triage", agents=[OTHER_AGENT],
                 scopes=["github:issues:read"], targets=["*"])  # fmt: skip
    (job.org_dir / "ci.toml").write_text(org)
    login = job.login()
    assert login.returncode == 0, login.stderr
    assert f"trust rule {job.org_dir}/ci.toml#org-triage" in login.stdout
    assert job.exec(OTHER_AGENT, "--", "true").returncode == 0
    assert job.exec(AGENT, "--scope", SCOPE, "--target", REPO, "--", "true").returncode == 122
    started = next(e for e in reversed(api_audit(job.kx)) if e["event"] == "session.started")
    assert started["policy"] == [
        {"file": f"{job.org_dir}/ci.toml", "sha256": started["policy"][0]["sha256"],
         "rules": ["org-triage"]}
    ]  # fmt: skip
    assert json.loads(job.kx.ok("whoami", "--json").stdout)["rules"][0]["rule"].endswith(
        "#org-triage"
    )


def test_an_agent_cannot_log_the_job_in_as_something_else(job: CIJob) -> None:
    """The agent is the attacker kontext exists for: from inside its ``kontext exec``,
    even handed the job's request token back, it cannot start (or force) a session."""
    assert job.login().returncode == 0
    before = json.loads(job.kx.ok("whoami", "--json").stdout)["session"]
    env = " ".join(f"{k}={v}" for k, v in job.issuer.env().items())
    inside = f"{env} {KONTEXT} login --federate github-actions --force"
    for confine in ((), ("--no-confine",)):
        ran = job.kx.run(
            "exec", "--agent", AGENT, "--scope", SCOPE, "--target", REPO, *confine, "--",
            "sh", "-c", f"cd {job.repo.path} && {inside}", env={"CI": "true"},
        )  # fmt: skip
        assert ran.returncode == 16, ran.stderr  # AgentRefused: confinement, or the gate
        assert f"inside agent:{AGENT}" in ran.stderr and "Logged in as" not in ran.stdout
    assert json.loads(job.kx.ok("whoami", "--json").stdout)["session"] == before
    assert len(job.issuer.minted) <= 3  # at most one more token each: neither became a session
    assert not [e for e in api_audit(job.kx) if e["event"] == "session.renewed"]
