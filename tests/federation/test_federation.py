"""``kontext login --federate``: a CI job proves who it is and its agents get credentials.

Each test is a job on a fresh runner: a new KONTEXT_HOME, CI=true, no terminal,
the job's token from the stand-in ``ACTIONS_ID_TOKEN_REQUEST_URL``, the trust
policy committed in a real git repository.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import api_audit, one_line_error

from tests.federation.harness import AGENT, OTHER_AGENT, REPO, SCOPE, CIJob, ci_job, needs_git

NAMED = ("--scope", SCOPE, "--target", REPO)  # what the rule names
PRINT_ENV = "import os; print(os.environ['KONTEXT_AGENT'], len(os.environ['KONTEXT_TOKEN']) > 100)"

pytestmark = needs_git


@pytest.fixture
def job() -> Iterator[CIJob]:
    with ci_job() as made:
        yield made


def test_a_trusted_job_logs_in_and_its_agent_runs(job: CIJob) -> None:
    login = job.login()
    assert login.returncode == 0, login.stderr
    user = f"ci:github:{REPO}@refs/heads/main"
    assert login.stdout.startswith(f"Logged in as {user} ({job.issuer.url}) until ")
    assert (
        "trust rule .kontext/ci.toml@" in login.stdout and "#release-notes-on-main" in login.stdout
    )
    # GitHub was asked once, with the request token, for kontext's audience.
    assert job.issuer.requests == [{"audience": "kontext", "authorized": True}]

    ran = job.exec(AGENT, *NAMED, "--", sys.executable, "-c", PRINT_ENV)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [AGENT, "True"]

    whoami = json.loads(job.kx.ok("whoami", "--json").stdout)
    assert whoami["user"] == user and whoami["kind"] == "federated"
    assert whoami["workload"]["run_id"] == job.issuer.job.run_id
    shown = job.kx.ok("whoami").stdout.splitlines()
    assert shown[0] == f"user:    {user}" and shown[1] == f"issuer:  {job.issuer.url}"
    assert shown[2] == "job:     .github/workflows/ci.yml (push), run 7001 attempt 1"


def test_the_audit_names_the_workload_and_the_rule(job: CIJob) -> None:
    job.login()
    job.exec(AGENT, *NAMED, "--", "true")
    job.exec(OTHER_AGENT, "--", "true")  # denied: the rule does not name it
    job.kx.ok("agent", "create", "late", "--allow", SCOPE)
    events = api_audit(job.kx)
    started = next(e for e in events if e["event"] == "session.started" and "workload" in e)
    assert started["kind"] == "federated" and started["replaced"].startswith("local-")
    workload = started["workload"]
    assert workload["repository"] == REPO and workload["ref"] == "refs/heads/main"
    assert workload["workflow"] == ".github/workflows/ci.yml"
    assert workload["run_id"] == "7001" and workload["run_attempt"] == "1"
    assert workload["sha"] == job.issuer.job.sha
    issued = next(e for e in events if e["event"] == "credential.issued")
    assert issued["workload"] == workload
    assert issued["user"]["id"] == f"ci:github:{REPO}@refs/heads/main"
    assert issued["policy_evaluation"] == {
        "org_policy": "allow",
        "user_consent": "allow",
        "agent_permissions": "allow",
    }
    (rule,) = issued["policy_ids"]["user_consent"]
    assert rule.endswith("#release-notes-on-main") and job.issuer.job.sha[:12] in rule
    revoked = next(e for e in events if e["event"] == "credential.revoked")
    assert revoked["workload"] == workload
    # Every event since the session began carries the workload, whatever wrote it.
    since = events[events.index(started) :]
    assert len(since) >= 5, [e["event"] for e in since]
    assert [e["event"] for e in since if e.get("workload") != workload] == []


def test_what_the_policy_does_not_name_is_denied_without_a_browser(job: CIJob) -> None:
    job.login()
    cases = [
        (OTHER_AGENT, (), "no trust rule lets"),
        (
            AGENT,
            ("--scope", "github:pulls:read", "--target", REPO),
            "does not name github:pulls:read",
        ),
        (AGENT, ("--scope", SCOPE, "--target", "acme/other"), "only for target acme/backend"),
        (AGENT, ("--scope", SCOPE), "not no target"),
        (AGENT, ("--target", REPO), "does not name github:pulls:read"),  # all its scopes
    ]
    for agent, args, said in cases:
        ran = job.exec(agent, *args, "--", "true")
        assert ran.returncode == 122, ran.stderr
        assert said in ran.stderr and "denied by user consent" in ran.stderr
        assert "consent grant" not in ran.stderr  # nothing a browser could answer
    denied = [e for e in api_audit(job.kx) if e["event"] == "credential.denied"]
    assert len(denied) == len(cases)
    assert all(e["workload"]["repository"] == REPO for e in denied)
    assert all(e["policy_evaluation"]["user_consent"] == "deny" for e in denied)


def test_org_policy_and_agent_permissions_still_apply(job: CIJob) -> None:
    """A trust rule is the consent layer only: the org's Cedar policy sees the CI
    session (its issuer, the workload as the user) and the agent's own allow-list
    still caps what it gets."""
    assert job.login().returncode == 0
    user = f"ci:github:{REPO}@refs/heads/main"
    (job.org_dir / "ci-writes.cedar").write_text(
        '@id("no-ci-on-backend")\n'
        "forbid (principal, action, resource)\n"
        f'when {{ context.issuer == "{job.issuer.url}" && context.user == User::"{user}" }};\n'
        '@id("everything-else")\npermit (principal, action, resource);\n'
    )
    job.kx.ok("policy", "reload")
    ran = job.exec(AGENT, *NAMED, "--", "true")
    assert ran.returncode == 122
    assert "denied by org policy: policy no-ci-on-backend forbids" in ran.stderr
    (job.org_dir / "ci-writes.cedar").unlink()
    job.kx.ok("policy", "reload")
    job.kx.ok("agent", "delete", AGENT)  # and again, without the scope the rule names
    job.kx.ok("agent", "create", AGENT, "--allow", "github:pulls:read")
    ran = job.exec(AGENT, *NAMED, "--", "true")
    assert ran.returncode == 122
    assert "denied by agent permissions" in ran.stderr and "github:contents:read" in ran.stderr
    denied = [e for e in api_audit(job.kx) if e["event"] == "credential.denied"]
    assert [e["policy_evaluation"]["user_consent"] for e in denied] == ["allow", "allow"]


def test_a_rules_max_ttl_caps_each_credential() -> None:
    with ci_job(rule={"max_ttl": "1m"}) as job:
        assert job.login().returncode == 0
        ran = job.exec(AGENT, *NAMED, "--ttl", "5m", "--", "true")
        assert ran.returncode == 122
        assert "allows credentials of at most 1m, not 5m" in ran.stderr
        ran = job.exec(
            AGENT, *NAMED, "--", sys.executable, "-c",
            "import os, time; print(int(os.environ['KONTEXT_TOKEN_EXPIRES']) - time.time())",
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert 0 < float(ran.stdout) <= 60  # the agent's default 10m, capped by the rule


def test_a_rule_naming_an_environment_and_a_workflow_matches_only_them() -> None:
    """The issue's "repository, ref/environment, workflow": a deployment job of the
    named workflow logs in; the same repository and ref from another workflow, or
    outside the environment, is refused (policy), and nothing starts."""
    release = ".github/workflows/release.yml"
    rule = {"environments": ["production"], "workflows": [release]}
    with ci_job(rule=rule) as job:
        deploy = {"environment": "production", "sub": f"repo:{REPO}:environment:production"}

        def login(**claims: object) -> subprocess.CompletedProcess[str]:
            job.issuer.answer = job.issuer.mint(**claims)
            try:
                return job.login()
            finally:
                job.issuer.answer = None

        ci = f"{REPO}/.github/workflows/ci.yml@refs/heads/main"
        for claims in ({"workflow_ref": f"{REPO}/{release}@refs/heads/main"},
                       {**deploy, "workflow_ref": ci}):  # fmt: skip
            line = one_line_error(login(**claims), 18)
            assert line.startswith("kontext: federation refused (policy): no trust rule names ")
        assert not [e for e in api_audit(job.kx) if e["event"] == "session.started"
                    and "workload" in e]  # fmt: skip
        ok = login(**deploy, workflow_ref=f"{REPO}/{release}@refs/heads/main")
        assert ok.returncode == 0, ok.stderr
        assert job.exec(AGENT, *NAMED, "--", "true").returncode == 0
        workload = api_audit(job.kx, n=1)[0]["workload"]
        assert workload["environment"] == "production" and workload["workflow"] == release
