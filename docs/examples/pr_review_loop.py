"""An agent loop that reviews pull requests through the kontext gateway.

Every call gets a credential of its own, narrowed to what that call needs: reading
a pull request holds ``pulls:read`` on one repository for one request; posting
the review holds ``pulls:write`` only inside a ``with`` block, revoked as the
block ends. No token is stored or reused across tasks, and no GitHub secret ever
reaches this process — the daemon's gateway adds it upstream.

Run it as an agent (``kontext integration connect github`` once, beforehand)::

    kontext agent create pr-reviewer --allow github:pulls:read --allow github:pulls:write
    kontext consent grant agent:pr-reviewer --scope github:pulls:read --scope github:pulls:write
    kontext exec --agent pr-reviewer -- python docs/examples/pr_review_loop.py acme/backend 42 43

    kontext audit tail --agent pr-reviewer     # one line per credential and per call

``--every SECONDS`` keeps reviewing the same pull requests, as a long-running bot
would; a refusal (``kontext.Denied``) skips that pull request and goes on.
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx

import kontext


def read_pull(gh: httpx.Client, repo: str, number: int) -> dict[str, object]:
    """GET the pull request; ``gh`` takes a read-only credential for this one request."""
    answer = gh.get(f"/repos/{repo}/pulls/{number}")
    answer.raise_for_status()
    return dict(answer.json())


def post_review(repo: str, number: int, body: str) -> int:
    """POST a review with a write credential that is revoked when the block ends."""
    with kontext.require("github", scopes=["pulls:write"], target=repo, ttl="30s") as cred:
        answer = httpx.post(
            f"{cred.base_url}/repos/{repo}/pulls/{number}/reviews",
            headers=cred.headers,
            json={"body": body, "event": "COMMENT"},
            timeout=30,
        )
    answer.raise_for_status()
    return int(answer.json()["id"])


def review(pull: dict[str, object]) -> str:
    """The agent's judgement (a real one would ask a model here)."""
    return f"Reviewed: {pull.get('title', '(untitled)')!s} looks fine to me."


def review_all(repo: str, numbers: list[int]) -> int:
    """Review each pull request; returns how many were refused."""
    refused = 0
    # An httpx.Client on the gateway whose every request carries a new credential,
    # limited to reading pull requests of this one repository.
    reader = kontext.client("github", scopes=["pulls:read"], target=repo, timeout=30)
    with reader as gh:
        for number in numbers:
            refused += review_one(gh, repo, number)
    return refused


def review_one(gh: httpx.Client, repo: str, number: int) -> int:
    """Read, judge, post; returns 1 if kontext refused, else 0."""
    try:
        pull = read_pull(gh, repo, number)
        review_id = post_review(repo, number, review(pull))
    except kontext.Denied as exc:  # this one is not ours to review: say why, go on
        print(f"{repo}#{number}: {exc}", file=sys.stderr)
        return 1
    print(f"{repo}#{number}: posted review {review_id}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Review pull requests through kontext.")
    parser.add_argument("repo", help="owner/name, e.g. acme/backend")
    parser.add_argument("numbers", nargs="+", type=int, help="pull request numbers")
    parser.add_argument("--every", type=float, help="review again every SECONDS, until stopped")
    args = parser.parse_args()
    try:
        while True:
            refused = review_all(args.repo, args.numbers)
            if args.every is None:
                return 1 if refused else 0
            time.sleep(args.every)
    except (kontext.NotConnected, kontext.Unavailable) as exc:  # nothing to do until fixed
        print(f"pr_review_loop: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
