"""``kontext login --federate``'s flags, as a CI job's author gets them wrong or right.

Flags that do not go together are one line, exit 2, before anything is read or
sent (no daemon is even started); the generic ``--federate oidc`` reads its token
from a variable (``--token-env``) as well as a file; and the audience kontext asks
GitHub for, and requires, is ``ci.audience``.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from conftest import Kontext, api_audit, one_line_error, short_home

from tests.federation.harness import AGENT, REPO, SCOPE, ci_job, create_agents, needs_git

NAMED = ("--scope", SCOPE, "--target", REPO)
AUDIENCE = "https://kontext.acme.example"
URL = "https://agent.buildkite.com"
PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"
MISUSES = [
    (("--federate", "travis"), "'travis' is not one of 'github-actions', 'gitlab', 'oidc'"),
    (("--federate", "oidc", "--token-env", "T"), "--federate oidc needs --issuer URL and"),
    (("--federate", "oidc", "--issuer", URL), "--federate oidc needs --issuer URL and"),
    (("--federate", "gitlab", "--token-file", "f", "--token-env", "T"), "not both"),
    (("--federate", "github-actions", "--token-env", "T"), "asks GitHub for the token itself"),
    (("--federate", "github-actions", "--no-browser"), "--federate opens no browser"),
    (("--federate", "gitlab", "--timeout", "60"), "--federate opens no browser"),
    (("--token-env", "T"), "go with --federate"),
    (("--checkout", "/tmp"), "go with --federate"),
]


@pytest.fixture(scope="module")
def idle() -> Iterator[Kontext]:
    """A runner's KONTEXT_HOME with no daemon: a misuse must not start one."""
    home = short_home()
    try:
        yield Kontext(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize(("args", "said"), MISUSES, ids=[" ".join(a) for a, _ in MISUSES])
def test_flags_that_do_not_go_together_are_one_line(
    idle: Kontext, args: tuple[str, ...], said: str
) -> None:
    line = one_line_error(idle.run("login", *args, env={"CI": "true", "T": "x.y.z"}), 2)
    assert said in line, line
    assert not idle.socket.exists()  # nothing was started, read or sent


@needs_git
def test_github_is_asked_for_the_configured_audience_and_only_it_is_accepted() -> None:
    with ci_job() as job:
        job.kx.ok("config", "set", "ci.audience", AUDIENCE)
        login = job.login()
        assert login.returncode == 0, login.stderr
        assert job.issuer.requests == [{"audience": AUDIENCE, "authorized": True}]
        # A token minted for the default audience is now another relying party's.
        job.issuer.answer = job.issuer.mint("kontext")
        line = one_line_error(job.login(), 18)
        assert line.startswith("kontext: federation refused (aud): ") and AUDIENCE in line


@needs_git
def test_any_oidc_issuer_from_a_variable_that_nothing_inherits() -> None:
    """``--token-env VAR``: the token is read from the job's environment, never from
    argv; an unset variable is one line, before a daemon is started. A variable of the
    job's own naming reaches neither the daemon the step starts nor the agent's
    process (exec drops any token for kontext's audience, whatever holds it)."""
    with ci_job("oidc", start=False) as job:
        subject = "organization:acme:pipeline:deploy:ref:refs/heads/main"
        rule = {"id": "buildkite-deploy", "issuer": job.issuer.url, "subject": subject,
                "agents": [AGENT], "scopes": [SCOPE], "targets": [REPO]}  # fmt: skip
        (job.org_dir / "ci.toml").write_text(tomli_w.dumps({"rule": [rule]}))
        args = ("login", "--federate", "oidc", "--issuer", job.issuer.url)
        line = one_line_error(job.kx.run(*args, "--token-env", "BUILDKITE_OIDC_TOKEN"), 2)
        assert "$BUILDKITE_OIDC_TOKEN is not set" in line and not job.kx.socket.exists()
        token = job.issuer.mint(sub=subject)
        env = {"CI": "true", "BUILDKITE_OIDC_TOKEN": token}
        proc = job.kx.run(*args, "--token-env", "BUILDKITE_OIDC_TOKEN", env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"Logged in as ci:oidc:{job.issuer.url}#{subject} (")
        assert token not in proc.stdout + proc.stderr
        daemon_env = Path(f"/proc/{job.kx.daemon_pid}/environ").read_bytes()
        assert token.encode() not in daemon_env and b"BUILDKITE_OIDC_TOKEN" not in daemon_env
        create_agents(job.kx)
        other = job.issuer.mint("vault")  # the job's token for another relying party
        ran = job.kx.run(
            "exec", "--agent", AGENT, *NAMED, "--", sys.executable, "-c", PRINT_ENV,
            env={**env, "VAULT_ID_TOKEN": other},
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        child = json.loads(ran.stdout)
        assert "BUILDKITE_OIDC_TOKEN" not in child and token not in child.values()
        assert child["VAULT_ID_TOKEN"] == other  # kept: not a token for kontext
        issued = next(e for e in api_audit(job.kx) if e["event"] == "credential.issued")
        assert issued["workload"]["subject"] == subject
        # The issuer named on the command line must be the token's.
        env["BUILDKITE_OIDC_TOKEN"] = job.issuer.mint(sub=subject)
        elsewhere = ("login", "--federate", "oidc", "--issuer", URL, "--token-env")
        line = one_line_error(job.kx.run(*elsewhere, "BUILDKITE_OIDC_TOKEN", env=env), 18)
        assert line.startswith("kontext: federation refused (iss): ") and URL in line


def test_misuses_cover_every_rule_of_validate() -> None:
    """Each UsageError of ``FederateRequest.validate`` has a case above."""
    source = Path(__file__).parents[2] / "kontext_cli" / "commands" / "login_federate.py"
    assert source.read_text().count("raise errors.UsageError(") == 4
