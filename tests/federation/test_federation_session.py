"""A CI session's life: it ends with its token (or sooner, or as a rule says), a second
login of the same job renews it, another job's replaces it, and nothing waits for a
person. Lifetimes are short and every wait is for a condition, never a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import api_audit, one_line_error, wait_until

from tests.federation.harness import AGENT, REPO, SCOPE, CIJob, ci_job, needs_git, write_config

NAMED = ("--scope", SCOPE, "--target", REPO)
HOLD = (
    "import json,os,sys;"
    "print(json.dumps({'jti': os.environ['KONTEXT_CREDENTIAL_ID'],"
    " 'token': os.environ['KONTEXT_TOKEN']}), flush=True); sys.stdin.read()"
)

pytestmark = needs_git


@pytest.fixture
def job() -> Iterator[CIJob]:
    with ci_job() as made:
        yield made


def hold(job: CIJob) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A job step's ``kontext exec`` holding its credential until stdin closes."""
    proc = job.kx.popen(
        "exec", "--agent", AGENT, *NAMED, "--", sys.executable, "-c", HOLD,
        stdin=subprocess.PIPE, env={"CI": "true"},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    return proc, json.loads(line)


def events_named(job: CIJob, name: str) -> list[dict[str, Any]]:
    return [e for e in api_audit(job.kx) if e["event"] == name]


def ci_ended(job: CIJob) -> list[dict[str, Any]]:
    """``session.ended`` of CI sessions (the local account's session ends at login too)."""
    return [e for e in events_named(job, "session.ended") if e["session_user"].startswith("ci:")]


def test_the_session_ends_when_its_token_does(job: CIJob) -> None:
    job.issuer.lifetime = 8
    assert job.login().returncode == 0
    proc, held = hold(job)
    try:
        assert job.kx.introspect(held["token"])["active"] is True
        assert wait_until(lambda: ci_ended(job), timeout=60)
        (ended,) = ci_ended(job)
        assert ended["reason"] == "its CI token expired"
        assert ended["workload"]["run_id"] == "7001"
        assert job.kx.introspect(held["token"]) == {"active": False}
        ran = job.exec(AGENT, *NAMED, "--", "true")
        assert ran.returncode == 122 and "ended (its CI token expired)" in ran.stderr
        assert "kontext login --federate" in ran.stderr
    finally:
        job.kx.close(proc)
    whoami = json.loads(job.kx.ok("whoami", "--json").stdout)
    assert whoami["logged_in"] is False and whoami["ended"] == "its CI token expired"


def test_a_configured_maximum_ends_it_sooner(job: CIJob) -> None:
    job.kx.ok("config", "set", "ci.max_session", "10s")
    assert job.login().returncode == 0  # the token itself lives 5 minutes
    whoami = json.loads(job.kx.ok("whoami", "--json").stdout)
    assert whoami["expires_at"] - whoami["checked_at"] <= 11
    assert wait_until(lambda: ci_ended(job), timeout=60)
    reason = ci_ended(job)[0]["reason"]
    assert reason.startswith("it reached its limit (ci.max_session")


def test_a_rule_may_give_a_job_longer_than_its_token() -> None:
    with ci_job(rule={"session": "25s"}) as job:
        job.issuer.lifetime = 6
        assert job.login().returncode == 0
        (token,) = job.issuer.minted
        exp = json.loads(job.kx.ok("whoami", "--json").stdout)["expires_at"]
        assert exp - __import__("time").time() > 15
        # Past the token's own exp (and the daemon's leeway), the session still issues.
        claims = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "=="))
        assert wait_until(lambda: __import__("time").time() > claims["exp"] + 6, timeout=30)
        assert job.exec(AGENT, *NAMED, "--", "true").returncode == 0
        assert wait_until(lambda: ci_ended(job), timeout=60)


def test_the_same_job_renews_its_session_and_keeps_what_runs(job: CIJob) -> None:
    assert job.login().returncode == 0
    first = json.loads(job.kx.ok("whoami", "--json").stdout)
    proc, held = hold(job)
    try:
        assert job.login().returncode == 0  # a fresh token, the same run and attempt
        assert job.kx.introspect(held["token"])["active"] is True
        assert events_named(job, "session.renewed")
        assert json.loads(job.kx.ok("whoami", "--json").stdout)["user"] == first["user"]
        # Another job (the next attempt) replaces a live session only when told to
        # (issue 19), and then what ran under it ends.
        job.issuer.job.attempt = "2"
        line = one_line_error(job.login(), 4)
        assert "already logged in as ci:github:" in line and "--force" in line
        assert job.kx.introspect(held["token"])["active"] is True
        assert job.login("--force").returncode == 0
        assert job.kx.introspect(held["token"]) == {"active": False}
    finally:
        job.kx.close(proc)
    revoked = [e for e in events_named(job, "credential.revoked") if e["jti"] == held["jti"]]
    assert revoked[0]["reason"] == "session ended: replaced by a new login"
    assert revoked[0]["workload"]["run_attempt"] == "1"  # the job that held it
    assert api_audit(job.kx, n=1)[0]["workload"]["run_attempt"] == "2"


def test_ci_never_opens_a_browser_or_waits(job: CIJob) -> None:
    """At a terminal, even without CI=true, a trust-policy denial is final: no consent
    page is opened (the $BROWSER here would only leave a mark) and nothing waits."""
    mark = Path(tempfile.mkdtemp(prefix="kx-browser-")) / "opened"
    browser = mark.parent / "browser"
    browser.write_text(f"#!/bin/sh\ntouch {mark}\n")
    browser.chmod(0o700)
    assert job.login().returncode == 0
    env = {"BROWSER": str(browser)}
    for ci in ("true", ""):
        ran = job.kx.run(
            "exec", "--agent", AGENT, "--scope", "github:pulls:read", "--target", REPO, "--",
            "true", env={**env, "CI": ci}, tty=True, timeout=60,
        )  # fmt: skip
        assert ran.returncode == 122, ran.stderr
    assert job.exec(AGENT, *NAMED, "--", "true").returncode == 0
    assert not mark.exists()


def test_the_session_survives_a_daemon_restart(job: CIJob) -> None:
    assert job.login().returncode == 0
    job.kx.stop()
    ran = job.exec(AGENT, *NAMED, "--", "true")  # starts a new daemon
    assert ran.returncode == 0, ran.stderr
    started = [e for e in api_audit(job.kx) if e["event"] == "daemon.started"][-1]
    assert started["workload"]["repository"] == REPO


def test_gitlab_jobs_log_in_with_their_id_token() -> None:
    with ci_job("gitlab") as job:
        job.issuer.job.workflow = ".gitlab-ci.yml"
        token = job.issuer.mint()
        proc = job.kx.run(
            "login", "--federate", "gitlab", "--checkout", str(job.repo.path),
            env={"CI": "true", "GITLAB_CI": "true", "KONTEXT_ID_TOKEN": token},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"Logged in as ci:gitlab:{REPO}@refs/heads/main")
        # The job's ID token stays in its environment; the agent's process never has it.
        ran = job.kx.run(
            "exec", "--agent", AGENT, *NAMED, "--", sys.executable, "-c",
            "import os; print(sorted(k for k in os.environ if 'ID_TOKEN' in k))",
            env={"CI": "true", "KONTEXT_ID_TOKEN": token},
        )  # fmt: skip
        assert ran.returncode == 0 and ran.stdout.strip() == "[]", ran.stderr
        workload = api_audit(job.kx, n=1)[0]["workload"]
        assert workload["workflow"] == ".gitlab-ci.yml" and workload["event"] == "push"
        assert workload["run_id"] == "7001"  # pipeline_id


def test_any_oidc_issuer_by_subject_from_a_token_file() -> None:
    with ci_job("oidc") as job:
        subject = "organization:acme:pipeline:deploy:ref:refs/heads/main"
        rule = {
            "rule": [
                {
                    "id": "buildkite-deploy",
                    "issuer": job.issuer.url,
                    "subject": subject,
                    "agents": [AGENT],
                    "scopes": [SCOPE],
                    "targets": [REPO],
                }
            ]
        }
        import tomli_w

        (job.org_dir / "ci.toml").write_text(tomli_w.dumps(rule))
        token_file = job.org_dir / "token"
        token_file.write_text(job.issuer.mint(sub=subject))
        os.chmod(token_file, 0o600)
        proc = job.kx.run(
            "login", "--federate", "oidc", "--issuer", job.issuer.url,
            "--token-file", str(token_file), env={"CI": "true"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"ci:oidc:{job.issuer.url}#{subject}" in proc.stdout
        assert job.exec(AGENT, *NAMED, "--", "true").returncode == 0
        write_config(job.kx, "")  # the issuer is no longer believed
        job.kx.ok("config", "reload")
        token_file.write_text(job.issuer.mint(sub=subject))
        proc = job.kx.run(
            "login", "--federate", "oidc", "--issuer", job.issuer.url,
            "--token-file", str(token_file),
        )  # fmt: skip
        assert proc.returncode == 18 and "(issuer)" in proc.stderr
