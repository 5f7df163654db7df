"""An agent script using httpx: read PR 42, post a review, then try an out-of-scope write.

Prints one JSON object: what it did, and everything it received (its environment,
response statuses, headers and bodies) so the test can check no upstream secret
ever reached it.
"""

import json
import os

import httpx

api = os.environ["GITHUB_API_URL"]
headers = {"Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}", "Accept": "application/json"}
received = []
with httpx.Client(base_url=api, headers=headers, timeout=30) as gh:
    pr = gh.get("/repos/acme/backend/pulls/42")
    review = gh.post(
        "/repos/acme/backend/pulls/42/reviews", json={"body": "LGTM", "event": "COMMENT"}
    )
    issue = gh.post("/repos/acme/backend/issues", json={"title": "out of scope"})
    for answer in (pr, review, issue):
        received.append({"headers": dict(answer.headers), "body": answer.text})
print(
    json.dumps(
        {
            "pr_status": pr.status_code,
            "title": pr.json().get("title"),
            "etag": pr.headers.get("etag"),
            "review_status": review.status_code,
            "review": review.json(),
            "issue_status": issue.status_code,
            "issue_message": issue.json().get("message"),
            "env": dict(os.environ),
            "received": received,
        }
    )
)
