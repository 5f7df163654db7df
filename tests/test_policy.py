"""Org policy in Cedar: the shipped examples, broken files, reload, explain == exec."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import KONTEXT, Kontext, short_home, wait_until, without_not_connected

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "policy-examples"
DENIED = 122


@pytest.fixture(scope="module")
def org() -> Iterator[Kontext]:
    """A daemon whose policy.d holds every shipped example, and a pr-reviewer agent."""
    home = short_home()
    k = Kontext(home)
    k.env["KONTEXT_SYSTEM_POLICY_DIR"] = str(home / "no-system-policy")
    # 40 needs an external login (tests/oauth/test_oauth_external.py tries it).
    shutil.copytree(EXAMPLES, home / "config" / "policy.d", ignore=shutil.ignore_patterns("40-*"))
    k.ok(
        "agent",
        "create",
        "pr-reviewer",
        "--max-ttl",
        "4h",
        "--allow",
        "github:pulls:write",
        "--allow",
        "github:pulls:read",
        "--allow",
        "slack:chat:write",
    )
    k.approve("pr-reviewer", "github:pulls:write", "github:pulls:read")  # org forbids slack
    yield k
    k.stop()
    shutil.rmtree(home, ignore_errors=True)


def exec_(k: Kontext, *args: str) -> tuple[int, str]:
    proc = k.run("exec", "--agent", "pr-reviewer", *args, "--", "true")
    return proc.returncode, without_not_connected(proc.stderr)


def explain(k: Kontext, *args: str) -> dict[str, object]:
    proc = k.run("policy", "explain", "--agent", "pr-reviewer", *args, "--json")
    result = json.loads(proc.stdout)
    assert proc.returncode == (0 if result["allowed"] else 8), proc.stderr
    return result


def org_layer(result: dict[str, object]) -> dict[str, object]:
    layers = result["layers"]
    assert isinstance(layers, list)
    assert [x["layer"] for x in layers] == ["org_policy", "user_consent", "agent_permissions"]
    return layers[0]  # type: ignore[no-any-return]


CASES = [
    # (policy id, args that the policy denies, args it allows)
    (
        "no-production-writes",
        ["--scope", "github:pulls:write", "--target", "acme/production-api"],
        ["--scope", "github:pulls:write", "--target", "acme/backend"],
    ),
    ("pr-reviewer-github-only", ["--scope", "slack:chat:write"], ["--scope", "github:pulls:read"]),
    (
        "max-one-hour",
        ["--scope", "github:pulls:read", "--ttl", "2h"],
        ["--scope", "github:pulls:read", "--ttl", "1h"],
    ),
]


@pytest.mark.parametrize(("policy", "deny", "allow"), CASES, ids=[c[0] for c in CASES])
def test_example_policy_denies_and_allows_through_exec_and_explain(
    org: Kontext, policy: str, deny: list[str], allow: list[str]
) -> None:
    code, err = exec_(org, *deny)
    assert code == DENIED
    assert err.startswith("kontext: denied by org policy: policy ") and policy in err
    verdict = org_layer(explain(org, *deny))
    assert verdict["decision"] == "deny" and verdict["policy_ids"] == [policy]

    assert exec_(org, *allow) == (0, "")
    verdict = org_layer(explain(org, *allow))
    assert verdict["decision"] == "allow" and verdict["policy_ids"] == ["baseline"]


def test_denials_are_audited_with_the_deciding_policy(org: Kontext) -> None:
    exec_(org, "--scope", "github:pulls:write", "--target", "acme/production-web")
    denied = [e for e in org.audit("pr-reviewer") if e["event"] == "credential.denied"][-1]
    assert denied["target"] == "acme/production-web"
    assert denied["policy_evaluation"]["org_policy"] == "deny"
    assert denied["policy_ids"] == {"org_policy": ["no-production-writes"]}
    issued = [e for e in org.audit("pr-reviewer") if e["event"] == "credential.issued"][-1]
    assert issued["policy_ids"] == {"org_policy": ["baseline"]}


def test_every_scope_must_be_allowed(org: Kontext) -> None:
    code, err = exec_(org, "--scope", "github:pulls:read", "--scope", "slack:chat:write")
    assert code == DENIED and "pr-reviewer-github-only" in err


def test_user_rules_are_not_defeated_by_not_logging_in(fresh_kx: Kontext) -> None:
    """SECURITY.md (17.9): the shipped no-disabled-users example cannot be sidestepped
    by using the local account or the embedded issuer instead of the org's provider."""
    policy_d = fresh_kx.home / "config" / "policy.d"
    policy_d.mkdir(parents=True)
    shutil.copy(EXAMPLES / "00-baseline.cedar", policy_d)
    shutil.copy(EXAMPLES / "40-no-disabled-users.cedar", policy_d)
    # No consent is possible either: the org layer refuses before any page is shown.
    name = fresh_kx.agent("github:pulls:read", consent=False)
    for step in ("local account", "embedded issuer"):
        if step == "embedded issuer":
            fresh_kx.ok("login", tty=True)
        proc = fresh_kx.run("exec", "--agent", name, "--", "true")
        assert proc.returncode == DENIED and "users-signed-in-by-the-org" in proc.stderr, step
        result = json.loads(fresh_kx.run("policy", "explain", "--agent", name, "--json").stdout)
        assert org_layer(result)["policy_ids"] == ["users-signed-in-by-the-org"]


def test_interactive_is_the_callers_terminal_not_a_claim(fresh_kx: Kontext) -> None:
    """``context.interactive`` is whether the requesting process has a controlling
    terminal (the kernel's word), never the request body's."""
    policy_d = fresh_kx.home / "config" / "policy.d"
    policy_d.mkdir(parents=True)
    (policy_d / "terminal.cedar").write_text(
        '@id("at-a-terminal")\npermit (principal, action, resource) when { context.interactive };\n'
    )
    name = fresh_kx.agent("github:pulls:read")
    body = json.dumps({"agent": name, "scopes": ["github:pulls:read"], "interactive": True})
    claim = (
        "import http.client,json,socket,sys\n"
        "s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1])\n"
        f"b={body!r}.encode()\n"
        "s.sendall(b'POST /v1/credentials HTTP/1.1\\r\\nHost: kontextd\\r\\n'"
        "+b'Content-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n'%len(b)+b)\n"
        "r=http.client.HTTPResponse(s);r.begin();print(r.status,r.read().decode())\n"
    )
    # No controlling terminal (a new session): claiming one in the body changes nothing.
    said = subprocess.run(
        [sys.executable, "-c", claim, str(fresh_kx.socket)],
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=60,
    )
    assert said.stdout.startswith("403 ") and "no policy permits" in said.stdout, said
    plain = fresh_kx.run("exec", "--agent", name, "--", "true")  # no terminal either
    assert plain.returncode == DENIED and "no policy permits" in plain.stderr
    if shutil.which("script") is None:
        pytest.skip("util-linux script(1) gives a command a terminal")
    # Under a pseudo-terminal that is the wrapper's controlling terminal: allowed.
    command = f"{KONTEXT} exec --agent {name} -- true"
    at_tty = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        env=fresh_kx.env,
        start_new_session=True,
        timeout=60,
    )
    assert at_tty.returncode == 0, at_tty.stdout + at_tty.stderr


def test_no_policy_files_means_the_org_layer_allows(fresh_kx: Kontext) -> None:
    name = fresh_kx.agent("github:pulls:read")
    result = json.loads(fresh_kx.run("policy", "explain", "--agent", name, "--json").stdout)
    assert org_layer(result)["reason"] == "no org policy is configured"
    check = fresh_kx.ok("policy", "check")
    assert "the org layer allows" in check.stderr


def test_broken_file_denies_everything_naming_file_and_line_until_fixed(
    fresh_kx: Kontext,
) -> None:
    policy_d = fresh_kx.home / "config" / "policy.d"
    policy_d.mkdir(parents=True)
    shutil.copy(EXAMPLES / "00-baseline.cedar", policy_d)
    name = fresh_kx.agent("github:pulls:read")
    assert fresh_kx.run("exec", "--agent", name, "--", "true").returncode == 0

    broken = policy_d / "50-broken.cedar"
    broken.write_text("// an edit in progress\n\nforbid (principal, action resource);\n")

    # Picked up without a restart (the daemon polls about once a second).
    def denied() -> bool:
        return fresh_kx.run("exec", "--agent", name, "--", "true").returncode == DENIED

    assert wait_until(denied, timeout=5)
    proc = fresh_kx.run("exec", "--agent", name, "--", "true")
    assert f"{broken}:3:" in proc.stderr and "policy files are broken" in proc.stderr
    check = fresh_kx.run("policy", "check")
    assert check.returncode == 11
    assert f"error: {broken}:3: unexpected token" in check.stdout
    assert check.stderr.startswith("kontext: org policy is broken")

    # A schema error names its line too.
    broken.write_text(
        "permit (principal, action, resource);\n\nforbid (principal, action, "
        "resource)\nwhen { context.tttl > 1 };\n"
    )
    check = fresh_kx.run("policy", "check")
    assert check.returncode == 11 and f"{broken}:3: attribute `tttl`" in check.stdout

    broken.unlink()
    fresh_kx.ok("policy", "reload")
    assert fresh_kx.run("exec", "--agent", name, "--", "true").returncode == 0


def test_reload_on_change_without_restart(fresh_kx: Kontext) -> None:
    name = fresh_kx.agent("github:pulls:read")
    pid = fresh_kx.daemon_pid
    policy_d = fresh_kx.home / "config" / "policy.d"
    policy_d.mkdir(parents=True)
    (policy_d / "deny-all.cedar").write_text(
        '@id("nothing")\nforbid (principal, action, resource);\n'
    )

    def exec_status() -> int:
        return fresh_kx.run("exec", "--agent", name, "--", "true").returncode

    assert wait_until(lambda: exec_status() == DENIED, timeout=5)
    (policy_d / "deny-all.cedar").unlink()
    assert wait_until(lambda: exec_status() == 0, timeout=5)
    assert fresh_kx.daemon_pid == pid
    reloads = [e for e in fresh_kx.audit() if e["event"] == "policy.reloaded"]
    assert reloads and reloads[-1]["policies"] == []


def test_schema_lists_agents_targets_and_action_groups(kx: Kontext) -> None:
    text = kx.ok("policy", "schema").stdout
    assert "entity Agent" in text and "owner: User" in text and "entity Target" in text
    assert 'action "github:pulls:write" in ["write"]' in text
    assert 'action "slack:channels:history" in ["read"]' in text
    for field in ("ttl: Long", "interactive: Bool", "time: Long", "user: User"):
        assert field in text


def test_explain_rejects_bad_input_in_one_line(kx: Kontext) -> None:
    proc = kx.run("policy", "explain", "--agent", "x", "--ttl", "forever")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("kontext: invalid duration")


def test_consent_cannot_be_granted_beyond_org_policy(org: Kontext) -> None:
    proc = org.run(
        "consent",
        "grant",
        "agent:pr-reviewer",
        "--scope",
        "github:pulls:write",
        "--target",
        "acme/production-api",
        tty=True,
    )
    assert proc.returncode == 14, proc.stderr
    assert "denied by org policy" in proc.stderr and "no-production-writes" in proc.stderr


NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
FORBID_ALL = '@id("org-forbids-everything")\nforbid (principal, action, resource);\n'
PERMIT_ALL = '@id("mine-permits-everything")\npermit (principal, action, resource);\n'


@pytest.fixture
def nobody() -> Iterator[tuple[Path, dict[str, str]]]:
    """A home of uid 65534's own, and the environment to run kontext there as 65534.

    Tests run as root, who may change /etc/kontext anyway (so the variable is
    honoured for root); the boundary is another user's, so the test is one."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running as another uid needs root and setpriv")
    home = short_home()
    os.chown(home, NOBODY, NOBODY)
    env = {**Kontext(home).env, "HOME": str(home)}
    yield home, env
    shutil.rmtree(home, ignore_errors=True)


def as_nobody(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_NOBODY, KONTEXT, *args], env=env, capture_output=True, text=True, timeout=60
    )


def policy_dir(owner: int, mode: int, text: str, file_owner: int | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix="kx-pol-", dir="/tmp"))
    (path / "org.cedar").write_text(text)
    os.chown(path / "org.cedar", file_owner if file_owner is not None else owner, owner)
    (path / "org.cedar").chmod(0o644)
    os.chown(path, owner, owner)
    path.chmod(mode)
    return path


@contextmanager
def daemon_as_nobody(env: dict[str, str], system_dir: Path) -> Iterator[str]:
    """kontextd run by uid 65534 with ``KONTEXT_SYSTEM_POLICY_DIR=system_dir``; yields
    what it said on stderr before it was ready (its notices)."""
    proc = subprocess.Popen(
        [*AS_NOBODY, sys.executable, "-m", "kontextd"],
        env={**env, "KONTEXT_SYSTEM_POLICY_DIR": str(system_dir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    said = ""
    while "kontextd: ready" not in said:
        line = proc.stderr.readline()
        assert line, said
        said += line
    try:
        yield said
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_system_policy_dir_is_not_the_users_to_move(
    nobody: tuple[Path, dict[str, str]],
) -> None:
    """SECURITY.md (17.8): KONTEXT_SYSTEM_POLICY_DIR moves the org policy only to a
    directory only root can change; pointed at the user's own, it is ignored, said and
    recorded, and the system directory stays in force."""
    _home, env = nobody
    roots = policy_dir(0, 0o755, FORBID_ALL)
    mine = policy_dir(NOBODY, 0o755, PERMIT_ALL)
    loose = policy_dir(0, 0o777, PERMIT_ALL)  # root's, but anyone may swap its files
    planted = policy_dir(0, 0o755, PERMIT_ALL, file_owner=NOBODY)
    try:
        with daemon_as_nobody(env, roots):
            created = as_nobody(env, "agent", "create", "a", "--allow", "github:pulls:read")
            assert created.returncode == 0, created.stderr
            explain = as_nobody(env, "policy", "explain", "--agent", "a", "--json")
            assert org_layer(json.loads(explain.stdout))["policy_ids"] == ["org-forbids-everything"]
            started = [e for e in audit_as_nobody(env) if e["event"] == "daemon.started"]
            digest = hashlib.sha256(FORBID_ALL.encode()).hexdigest()
            # What ran, file by file with its hash.
            assert started[-1]["policy"]["files"] == {str(roots / "org.cedar"): digest}

        for attempt, why in ((mine, "owned by uid 65534"), (loose, "others than root can write")):
            with daemon_as_nobody(env, attempt) as said:
                assert f"KONTEXT_SYSTEM_POLICY_DIR={attempt} is ignored" in said and why in said
                status = json.loads(as_nobody(env, "policy", "check", "--json").stdout)
                assert status["dirs"][0] == "/etc/kontext/policy.d"
                assert str(attempt / "org.cedar") not in status["files"]
                record = [e for e in audit_as_nobody(env) if e["event"] == "daemon.started"]
                assert record[-1]["policy"]["system_dir"] == "/etc/kontext/policy.d"
                assert why in record[-1]["policy"]["system_dir_ignored"]

        # Root's directory with a file the user owns: not the org's word; nothing passes.
        with daemon_as_nobody(env, planted):
            explain = as_nobody(env, "policy", "explain", "--agent", "a", "--json")
            verdict = org_layer(json.loads(explain.stdout))
            assert verdict["decision"] == "deny" and "must be root's" in str(verdict["reason"])
    finally:
        for path in (roots, mine, loose, planted):
            shutil.rmtree(path, ignore_errors=True)


def audit_as_nobody(env: dict[str, str]) -> list[dict[str, object]]:
    out = as_nobody(env, "audit", "tail", "-n", "200", "--json").stdout
    return [json.loads(line) for line in out.splitlines()]
