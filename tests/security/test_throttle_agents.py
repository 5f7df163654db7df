"""An agent that fails at the issuer on purpose locks out only itself.

The issuer throttles failed attempts (guessing codes, secrets, tokens). Every agent
runs as the user's own uid, so a throttle keyed by uid alone let one prompt-injected
agent, failing twenty times in ten seconds over and over, refuse every other agent's
``kontext.require()`` and the user's own login and consent. Here the failing agent
stands where it would (a child of ``kontext exec``, new connection per attempt), and
the others — another agent inside its own exec, and the user outside any — keep
working while it is locked out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
from conftest import Kontext, api_audit, api_new_agent, gateway_daemon
from upstream.fake_github import API_KEY, FakeGitHub

READ = "github:pulls:read"

# The agent's side: N exchanges with a forged subject token (each refused:
# invalid_grant, a failure the throttle counts), then one with its own credential.
ATTEMPTS = r"""
import json, os, sys, urllib.error, urllib.parse, urllib.request
url = os.environ["KONTEXT_URL"] + "/token"
def exchange(subject):
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "scope": "github:pulls:read"}
    data = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(url, data, timeout=60) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
forged = [exchange("forged." + "A" * 40 + "." + str(n)) for n in range(int(sys.argv[1]))]
print(json.dumps({"forged": forged, "own": exchange(os.environ["KONTEXT_TOKEN"])}))
"""


@pytest.fixture(scope="module")
def gw() -> Iterator[Kontext]:
    with FakeGitHub() as fake, gateway_daemon(fake.url, API_KEY) as k:
        yield k


def attempts(k: Kontext, agent: str, forged: int) -> dict[str, list[int] | int]:
    ran = k.run("exec", "--agent", agent, "--", sys.executable, "-c", ATTEMPTS, str(forged))
    assert ran.returncode == 0, ran.stderr
    result: dict[str, list[int] | int] = json.loads(ran.stdout)
    return result


def test_a_failing_agent_locks_out_itself_not_the_others(gw: Kontext) -> None:
    mallory = api_new_agent(gw, READ, prefix="mallory")
    honest = api_new_agent(gw, READ, prefix="honest")
    # 22 forged tokens: 20 refused (400), then the throttle answers (429) — and its
    # own, valid credential is refused too while it is locked out.
    tried = attempts(gw, mallory, 22)
    assert tried["forged"] == [400] * 20 + [429] * 2
    assert tried["own"] == 429
    # Another agent, inside its own exec, at the same moment: not locked out.
    other = attempts(gw, honest, 1)
    assert other == {"forged": [400], "own": 200}
    # The user, outside every exec tree: a wrong code is judged (400), not throttled.
    with gw.http() as http:
        answer = http.post("/token", data={"grant_type": "authorization_code", "code": "x"})
    assert answer.status_code in (400, 401)
    # The lock-out is audited, naming the agent that caused it.
    throttled = [e for e in api_audit(gw) if e["event"] == "oauth.throttled"]
    assert throttled and throttled[-1]["caller"].endswith(f"/agent:{mallory}")
