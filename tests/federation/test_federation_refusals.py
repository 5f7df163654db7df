"""Every refusal of ``kontext login --federate``: one line naming the check, exit 18,
audited as ``federation.refused``, and nothing changed.

The job first logs in for real; each bad token is then handed to the very same
step (the stand-in GitHub answers the token request with it), and afterwards the
session is still the one the good token started and its agent still runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import api_audit, one_line_error, wait_until
from joserfc import jwk

from tests.federation.ci_issuer import Issuer, b64, ci_issuer
from tests.federation.harness import AGENT, REPO, SCOPE, CIJob, ci_job, needs_git

REFUSED = 18

pytestmark = needs_git


@pytest.fixture
def job() -> Iterator[CIJob]:
    with ci_job() as made:
        yield made


def refused(job: CIJob, token: str, check: str) -> str:
    """Present ``token`` through the job's login step; assert one line naming ``check``."""
    job.issuer.answer = token
    try:
        line = one_line_error(job.login(), REFUSED)
    finally:
        job.issuer.answer = None
    assert line.startswith(f"kontext: federation refused ({check}): "), line
    signature = token.rsplit(".", 1)[-1]
    assert token not in line and (not signature or signature[:20] not in line)
    return line


def hs256_with_the_public_key(issuer: Issuer) -> str:
    """The classic confusion: HMAC keyed with the issuer's public key (RFC 8725 §2.1)."""
    pem = issuer.key.as_pem(private=False)
    head = b64(json.dumps({"alg": "HS256", "kid": issuer.kid, "typ": "JWT"}).encode())
    body = b64(json.dumps(issuer.claims("kontext")).encode())
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def bad_tokens(job: CIJob) -> list[tuple[str, str, str]]:
    """(what, token, check) for each token the daemon must refuse."""
    iss = job.issuer
    other_key = jwk.RSAKey.generate_key(2048, private=True)
    return [
        ("expired", iss.mint(exp=int(time.time()) - 60, iat=int(time.time()) - 360), "exp"),
        ("for another audience", iss.mint("sts.amazonaws.com"), "aud"),
        ("not yet valid", iss.mint(nbf=int(time.time()) + 600), "nbf"),
        ("signed by another key", iss.mint(key=other_key), "signature"),
        ("alg none", iss.forged({"alg": "none", "typ": "JWT"}), "alg"),
        ("alg None", iss.forged({"alg": "None", "kid": iss.kid}), "alg"),
        ("HS256 with the public key", hs256_with_the_public_key(iss), "alg"),
        ("a repository the policy does not name", iss.mint(repository="acme/other",
            sub="repo:acme/other:ref:refs/heads/main",
            workflow_ref="acme/other/.github/workflows/ci.yml@refs/heads/main"), "policy"),
        ("a ref the policy does not name", iss.mint(ref="refs/heads/release",
            sub=f"repo:{REPO}:ref:refs/heads/release",
            workflow_ref=f"{REPO}/.github/workflows/ci.yml@refs/heads/release"), "policy"),
        ("claims that disagree", iss.mint(sub="repo:acme/other:ref:refs/heads/main"), "claims"),
        ("no run id", iss.mint(run_id=None), "claims"),
        ("not a JWT", "not-a-jwt.at-all", "format"),
    ]  # fmt: skip


def session_of(job: CIJob) -> dict[str, Any]:
    return dict(json.loads(job.kx.ok("whoami", "--json").stdout))


def test_each_bad_token_is_one_line_audited_and_changes_nothing(job: CIJob) -> None:
    assert job.login().returncode == 0
    before = session_of(job)
    for what, token, check in bad_tokens(job):
        line = refused(job, token, check)
        event = api_audit(job.kx, n=1)[0]
        assert event["event"] == "federation.refused", what
        assert event["check"] == check and event["reason"] == line.removeprefix("kontext: ")
        assert token not in json.dumps(event)
        assert session_of(job) == before, what
    ran = job.exec(AGENT, "--scope", SCOPE, "--target", REPO, "--", "true")
    assert ran.returncode == 0, ran.stderr


def test_refusals_record_what_was_claimed_and_what_was_verified(job: CIJob) -> None:
    refused(job, job.issuer.mint("sts.amazonaws.com"), "aud")
    event = api_audit(job.kx, n=1)[0]
    assert event["presented"]["verified"] is False  # a failed signature check proves nothing
    assert event["presented"]["repository"] == REPO and event["presented"]["run_id"] == "7001"
    other = job.issuer.mint(ref="refs/heads/release", sub=f"repo:{REPO}:ref:refs/heads/release")
    refused(job, other, "policy")
    event = api_audit(job.kx, n=1)[0]
    assert event["presented"]["verified"] is True
    assert event["presented"]["ref"] == "refs/heads/release"
    assert event["presented"]["workflow"] == ".github/workflows/ci.yml"


def test_an_issuer_kontext_does_not_trust_is_never_contacted(job: CIJob) -> None:
    with ci_issuer() as stranger:
        line = refused(job, stranger.mint(), "issuer")
        assert stranger.url in line and "[ci.issuers]" in line
        assert stranger.paths == []  # no discovery, no JWKS: nothing was fetched from it


def test_a_token_is_used_once_and_refused_after_it_expires(job: CIJob) -> None:
    job.issuer.lifetime = 3
    assert job.login().returncode == 0
    (token,) = job.issuer.minted
    refused(job, token, "replay")
    # Wait for the condition (exp + the daemon's few seconds of leeway), not a time.
    exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]
    assert wait_until(lambda: time.time() > exp + 6, timeout=30)
    refused(job, token, "exp")


def test_a_request_token_github_refuses_is_one_line(job: CIJob) -> None:
    line = one_line_error(job.login(env={"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "wrong"}), 13)
    assert "HTTP 401" in line and "id-token: write" in line
    assert "wrong" not in line


def test_without_id_token_permission_the_step_says_what_to_add(job: CIJob) -> None:
    env = {**job.issuer.env()}
    del env["ACTIONS_ID_TOKEN_REQUEST_URL"]
    proc = job.kx.run(
        "login", "--federate", "github-actions", env={**env, "ACTIONS_ID_TOKEN_REQUEST_URL": ""}
    )
    line = one_line_error(proc, 2)
    assert "permissions: id-token: write" in line


def test_gitlab_tokens_are_refused_the_same_way() -> None:
    """GitLab's shape through ``--federate gitlab``: each refusal one line naming its
    check, the token never in it."""
    with ci_job("gitlab") as job:
        iss = job.issuer
        cases = [
            (iss.mint("vault"), "aud"),  # an id_tokens entry declared for another service
            (iss.mint(exp=int(time.time()) - 60, iat=int(time.time()) - 360), "exp"),
            (iss.mint(project_path="acme/other",
                      sub="project_path:acme/other:ref_type:branch:ref:main"), "policy"),
            (iss.mint(ref="release", ref_path="refs/heads/release", ref_protected="true",
                      sub=f"project_path:{REPO}:ref_type:branch:ref:release"), "policy"),
            (iss.mint(ref_protected="false"), "protected-ref"),
            (iss.mint(pipeline_id=None), "claims"),
        ]  # fmt: skip
        for token, check in cases:
            proc = job.kx.run(
                "login", "--federate", "gitlab", "--checkout", str(job.repo.path),
                env={"CI": "true", "GITLAB_CI": "true", "KONTEXT_ID_TOKEN": token},
            )  # fmt: skip
            line = one_line_error(proc, REFUSED)
            assert line.startswith(f"kontext: federation refused ({check}): "), line
            assert token.rsplit(".", 1)[1][:20] not in line
        checks = [e["check"] for e in api_audit(job.kx) if e["event"] == "federation.refused"]
        assert checks == [check for _, check in cases]
