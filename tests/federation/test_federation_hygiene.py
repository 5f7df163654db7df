"""No CI token, and nothing that obtains one, outside the login step that uses it.

The approach of ``tests/test_hygiene.py``, for a CI job: the daemon logs at
debug level and is started by the job's own ``login --federate`` step (so it
could inherit the job's environment); the job logs in, renews, is refused a few
bad tokens, runs its agent, and exports its audit as a CI job would. Then every
CI token the platform handed out, and the request token that obtains them, is
searched for: in the daemon's environment and argv, the agent's environment,
the daemon log, the audit log and its export, every file under KONTEXT_HOME,
and everything ``kontext`` printed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.federation.harness import AGENT, REPO, SCOPE, CIJob, ci_job, create_agents, needs_git

CHILD = "import json,os; print(json.dumps(dict(os.environ)))"

pytestmark = needs_git


@dataclass
class Run:
    job: CIJob
    seen: list[tuple[str, bytes]] = field(default_factory=list)
    child_env: dict[str, str] = field(default_factory=dict)

    def keep(self, where: str, data: bytes | str) -> None:
        self.seen.append((where, data.encode() if isinstance(data, str) else data))

    def secrets(self) -> list[bytes]:
        found = [self.job.issuer.request_token.encode()]
        for token in self.job.issuer.minted:
            found += [token.encode(), token.rsplit(".", 1)[1].encode()]
        return found


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    with ci_job(start=False, env={"KONTEXT_DEBUG": "1"}) as job:
        r = Run(job)
        for step in range(2):  # login, then the same job's renewal
            proc = job.login()
            assert proc.returncode == 0, proc.stderr
            r.keep(f"login {step}", proc.stdout + proc.stderr)
        create_agents(job.kx)
        job.issuer.answer = job.issuer.mint(exp=int(time.time()) - 60)
        r.keep("refused login", job.login().stderr)
        job.issuer.answer = None
        job.issuer.minted.append(job.issuer.mint("wrong-audience"))
        job.issuer.answer = job.issuer.minted[-1]
        r.keep("refused login", job.login().stderr)
        job.issuer.answer = None
        ran = job.kx.run(
            "exec", "--agent", AGENT, "--scope", SCOPE, "--target", REPO, "--",
            sys.executable, "-c", CHILD, env={**job.issuer.env()},
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        r.child_env = json.loads(ran.stdout)
        pid = json.loads((job.kx.runtime / "http.json").read_text())["pid"]
        r.keep("/proc/daemon/environ", Path(f"/proc/{pid}/environ").read_bytes())
        r.keep("/proc/daemon/cmdline", Path(f"/proc/{pid}/cmdline").read_bytes())
        export = job.kx.home / "audit-export.jsonl"
        job.kx.ok("audit", "export", "--output", str(export))
        r.keep("audit export", export.read_bytes())
        for args in (("whoami", "--json"), ("audit", "tail", "-n", "500", "--json")):
            out = job.kx.ok(*args)
            r.keep(" ".join(args), out.stdout + out.stderr)
        yield r


def assert_absent(run: Run, where: str, data: bytes) -> None:
    for needle in run.secrets():
        assert needle not in data, f"a CI token or the request token is in {where}"


def test_the_job_got_its_tokens(run: Run) -> None:
    assert len(run.job.issuer.minted) >= 4  # two logins, two refusals


def test_not_in_the_agents_environment(run: Run) -> None:
    assert "KONTEXT_TOKEN" in run.child_env
    for name in ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL"):
        assert name not in run.child_env
    assert_absent(run, "the agent's environment", json.dumps(run.child_env).encode())


def test_not_in_the_daemons_environment_argv_or_output(run: Run) -> None:
    for where, data in run.seen:
        assert_absent(run, where, data)
    environ = dict(run.seen)["/proc/daemon/environ"]
    assert b"ACTIONS_ID_TOKEN_REQUEST" not in environ


def test_not_in_the_daemon_log(run: Run) -> None:
    assert_absent(run, "kontextd.log", run.job.kx.log_file.read_bytes())


def test_not_anywhere_under_kontext_home(run: Run) -> None:
    files = [p for p in run.job.kx.home.rglob("*") if p.is_file()]
    assert any(p.name == "kontext.db" for p in files)
    for path in files:
        assert_absent(run, str(path), path.read_bytes())
