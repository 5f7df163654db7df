"""An agent script in the style of @actions/github and octokit: standard library only,
base URL from GITHUB_API_URL, token from GH_TOKEN (``Authorization: token ...``).
"""

import json
import os
import urllib.error
import urllib.request

API = os.environ["GITHUB_API_URL"]
TOKEN = os.environ["GH_TOKEN"]


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(API + path, data=data, method=method)
    req.add_header("Authorization", f"token {TOKEN}")
    req.add_header("Accept", "application/vnd.github+json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


pr_status, pr = call("GET", "/repos/acme/backend/pulls/42")
review_status, review = call(
    "POST", "/repos/acme/backend/pulls/42/reviews", {"body": "Ship it", "event": "COMMENT"}
)
print(
    json.dumps(
        {
            "pr_status": pr_status,
            "title": pr.get("title"),
            "review_status": review_status,
            "review": review,
            "env": dict(os.environ),
        }
    )
)
