"""An agent under ``kontext exec`` that calls GitHub through the gateway when told to.

Prints ``ready`` and its kontext environment as JSON (the token is the test's to
introspect); then for each line on stdin makes one call (GET a pull request,
with its GITHUB_TOKEN) and prints the HTTP status; exits at end of input.
Standard library only, so it starts quickly.
"""

import json
import os
import sys
import urllib.error
import urllib.request


def call() -> int:
    request = urllib.request.Request(
        os.environ["GITHUB_API_URL"] + "/repos/acme/backend/pulls/1",
        headers={"Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


print("ready", flush=True)
print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(("KONTEXT_", "GITHUB_"))}))
sys.stdout.flush()
for _ in sys.stdin:
    print(call(), flush=True)
