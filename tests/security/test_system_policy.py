"""The organisation's policy in /etc/kontext/policy.d is not the user's to drop.

Issue 17 item 8: a user restarting kontextd with ``KONTEXT_SYSTEM_POLICY_DIR``
pointed at any root-owned directory without policy files (``/usr/share``: root's
all the way up, so it passed the "only root can change it" check) read no org
policy at all. The daemon runs as uid 65534 in a mount namespace of its own whose
``/etc`` is an overlay carrying ``/etc/kontext/policy.d/org.cedar`` (the
machine's ``/etc`` is untouched), and the user tries the variable.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_policy import (
    AS_NOBODY,
    FORBID_ALL,
    PERMIT_ALL,
    as_nobody,
    nobody,  # noqa: F401 (a fixture)
    org_layer,
    policy_dir,
)

ORG_FILE = "/etc/kontext/policy.d/org.cedar"
MOUNT = 'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc'


def _can_mount() -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


@contextmanager
def daemon_under_org_policy(env: dict[str, str], override: str | None) -> Iterator[str]:
    """kontextd as uid 65534, its /etc holding FORBID_ALL as the org's policy file, with
    ``KONTEXT_SYSTEM_POLICY_DIR=override``; yields what it said before it was ready."""
    if shutil.which("unshare") is None or not _can_mount():
        pytest.skip("a mount namespace needs unshare and CAP_SYS_ADMIN")
    layer = Path(tempfile.mkdtemp(prefix="kx-etc-", dir="/tmp"))
    rules = layer / "upper" / "kontext" / "policy.d" / "org.cedar"
    rules.parent.mkdir(parents=True)
    (layer / "work").mkdir()
    rules.write_text(FORBID_ALL)
    rules.chmod(0o644)
    script = f'{MOUNT} && shift && exec "$@"'
    command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"]
    daemon_env = {k: v for k, v in env.items() if k != "KONTEXT_SYSTEM_POLICY_DIR"}
    if override is not None:
        daemon_env["KONTEXT_SYSTEM_POLICY_DIR"] = override
    proc = subprocess.Popen(
        [*command, str(layer), *AS_NOBODY, sys.executable, "-m", "kontextd"],
        env=daemon_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    said = ""
    try:
        while "kontextd: ready" not in said:
            line = proc.stderr.readline()
            assert line, said
            said += line
        yield said
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        shutil.rmtree(layer, ignore_errors=True)


def _org_verdict(env: dict[str, str]) -> dict[str, object]:
    explain = as_nobody(env, "policy", "explain", "--agent", "a", "--json")
    assert explain.stdout, explain.stderr  # exit 8 when it is denied, with the verdicts
    return org_layer(json.loads(explain.stdout))


def test_the_user_cannot_drop_the_orgs_policy_with_the_variable(
    nobody: tuple[Path, dict[str, str]],  # noqa: F811
) -> None:
    _home, env = nobody
    empty_but_roots = "/usr/share"  # root's all the way up, no *.cedar in it
    theirs = policy_dir(0, 0o755, PERMIT_ALL)  # root's, permitting everything
    digest = hashlib.sha256(FORBID_ALL.encode()).hexdigest()
    try:
        with daemon_under_org_policy(env, None):
            created = as_nobody(env, "agent", "create", "a", "--allow", "github:pulls:read")
            assert created.returncode == 0, created.stderr
            assert _org_verdict(env)["policy_ids"] == ["org-forbids-everything"]
        for override in (empty_but_roots, str(theirs)):
            with daemon_under_org_policy(env, override):
                verdict = _org_verdict(env)
                assert verdict["decision"] == "deny", override
                assert "org-forbids-everything" in verdict["policy_ids"], override  # type: ignore[operator]
                status = json.loads(as_nobody(env, "policy", "check", "--json").stdout)
                assert status["dirs"][:2] == ["/etc/kontext/policy.d", override]
                assert ORG_FILE in status["files"]
                denied = as_nobody(env, "exec", "--agent", "a", "--no-confine", "--", "true")
                assert denied.returncode == 122 and "org-forbids-everything" in denied.stderr
                out = as_nobody(env, "audit", "tail", "-n", "200", "--json").stdout
                started = [json.loads(x) for x in out.splitlines()]
                started = [e for e in started if e["event"] == "daemon.started"]
                assert started[-1]["policy"]["files"][ORG_FILE] == digest
    finally:
        shutil.rmtree(theirs, ignore_errors=True)
