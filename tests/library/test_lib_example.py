"""docs/examples/pr_review_loop.py runs as documented, and the audit tells its story.

The example is run exactly as its docstring says, under ``kontext exec``, against
the fake GitHub behind the daemon's gateway.
"""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import Kontext, api_audit, api_new_agent
from library_harness import READ_WRITE, github, gw
from upstream.fake_github import FakeGitHub

__all__ = ["github", "gw"]  # module-scoped fixtures, used by name below

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "pr_review_loop.py"


def test_the_review_loop_reviews_each_pull_request_with_a_credential_per_call(
    gw: Kontext, github: FakeGitHub
) -> None:
    agent = api_new_agent(gw, *READ_WRITE, prefix="pr-reviewer")
    before = len(github.reviews)
    proc = gw.run(
        "exec", "--agent", agent, "--", sys.executable, str(EXAMPLE), "acme/backend", "42", "43"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "acme/backend#42: posted review " + str(before + 1),
        "acme/backend#43: posted review " + str(before + 2),
    ]
    assert [r["body"] for r in github.reviews[before:]] == [
        "Reviewed: Add the gateway looks fine to me."
    ] * 2
    events = api_audit(gw, agent)
    exchanged = [e for e in events if e["event"] == "credential.issued" and e.get("parent")]
    calls = [e for e in events if e["event"] == "api.call"]
    assert len(exchanged) == len(calls) == 4  # two reads, two writes: one credential each
    assert {c["jti"] for c in calls} == {e["jti"] for e in exchanged}
    writes = {e["jti"] for e in exchanged if e["scopes"] == ["github:pulls:write"]}
    revoked = {e["jti"] for e in events if e["event"] == "credential.revoked"}
    assert len(writes) == 2 and writes <= revoked  # the with blocks ended them

    lines = gw.ok("audit", "tail", "--agent", agent, "-n", "50").stdout.splitlines()
    story = [line.split(None, 1)[1] for line in lines]
    # One line per credential the loop took (the exec's own has no target) and per call,
    # each saying what it narrowed to and that it was exchanged from the exec's lease.
    issued = f"credential.issued  agent:{agent} -> github [acme/backend] github:pulls:"
    took = [s for s in story if s.startswith(issued)]
    assert len(took) == 4 and all(" (exchange of " in s for s in took)
    assert sum(s.startswith(f"api.call           agent:{agent} ") for s in story) == 4


def test_a_refused_pull_request_is_skipped_with_the_reason(gw: Kontext) -> None:
    agent = api_new_agent(gw, "github:pulls:read", prefix="read-only")
    proc = gw.run("exec", "--agent", agent, "--", sys.executable, str(EXAMPLE), "acme/backend", "7")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "acme/backend#7: denied by delegation: scopes can only shrink: "
        "the subject token lacks github:pulls:write"
    )
