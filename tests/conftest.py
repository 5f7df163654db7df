"""Test harness: a real kontextd in a temp KONTEXT_HOME, driven through the real CLI.

Nothing of ours is mocked. ``kx`` is one daemon shared by the session (agents get
unique names); ``fresh_kx`` is a daemon of a test's own, for tests that restart,
kill or reconfigure it. Homes live in short /tmp paths because a Unix socket path
must fit in 108 bytes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

BIN = Path(sys.executable).parent
KONTEXT = str(BIN / "kontext")
KONTEXTD = str(BIN / "kontextd")
_names = itertools.count(1)
BROWSER_SCRIPT = Path(__file__).parent / "browser_approve.py"
_browser_dir = tempfile.mkdtemp(prefix="kx-browser-")


def browser_command() -> str:
    """An executable for ``$BROWSER`` (webbrowser runs it with the URL) that answers the
    consent and login pages over HTTP like a person clicking Approve."""
    path = Path(_browser_dir) / "browser"
    if not path.exists():
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{BROWSER_SCRIPT}" "$@"\n')
        path.chmod(0o700)
    return str(path)


class Kontext:
    """One KONTEXT_HOME and the ways a user (or a browser) reaches its daemon."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "KONTEXT_HOME": str(home)}
        for var in ("KONTEXT_TOKEN", "KONTEXT_AGENT", "GITHUB_TOKEN", "GH_TOKEN", "NO_COLOR", "CI"):
            self.env.pop(var, None)
        self.env["NO_COLOR"] = "1"
        # Never a real browser: consent and login pages are answered by the stand-in.
        self.env["BROWSER"] = browser_command()

    # -- the CLI --------------------------------------------------------------

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        tty: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kontext ARGS`` and return the finished process (never raises on exit status).

        ``tty=True`` gives it a terminal as stdin, as a person at a shell has: ``login``
        and ``consent grant`` open a browser only then (elsewhere they fail at once).
        """
        if not tty:
            return subprocess.run(
                [KONTEXT, *args],
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**self.env, **(env or {})},
            )
        primary, secondary = pty.openpty()
        try:
            return subprocess.run(
                [KONTEXT, *args],
                stdin=secondary,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**self.env, **(env or {})},
            )
        finally:
            os.close(primary)
            os.close(secondary)

    def ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run and insist on exit status 0."""
        proc = self.run(*args, **kw)
        assert proc.returncode == 0, f"kontext {' '.join(args)} -> {proc.returncode}\n{proc.stderr}"
        return proc

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        env = {**self.env, **kw.pop("env", {})}
        return subprocess.Popen([KONTEXT, *args], env=env, **kw)

    def agent(
        self,
        *allow: str,
        prefix: str = "agent",
        extra: tuple[str, ...] = (),
        consent: bool = True,
    ) -> str:
        """Create an agent with a unique name and (unless ``consent=False``) approve all
        its scopes on the consent page, as ``kontext consent grant`` + a browser would."""
        name = f"{prefix}-{os.getpid()}-{next(_names)}"
        args = ["agent", "create", name]
        scopes = allow or ("github:pulls:read",)
        for scope in scopes:
            args += ["--allow", scope]
        self.ok(*args, *extra)
        if consent:
            self.approve(name, *scopes)
        return name

    def approve(self, agent: str, *scopes: str, target: str | None = None) -> None:
        """``kontext consent grant`` with the $BROWSER stand-in clicking Approve."""
        args = ["consent", "grant", f"agent:{agent}", "--for", "1d"]
        for scope in scopes:
            args += ["--scope", scope]
        if target is not None:
            args += ["--target", target]
        self.ok(*args, tty=True)

    def audit(self, agent: str | None = None, n: int = 10000) -> list[dict[str, Any]]:
        args = ["audit", "tail", "-n", str(n), "--json"] + (["--agent", agent] if agent else [])
        return [json.loads(line) for line in self.ok(*args).stdout.splitlines()]

    # -- the daemon's files and ports -----------------------------------------

    @property
    def runtime(self) -> Path:
        return self.home / "run"

    @property
    def socket(self) -> Path:
        return self.runtime / "control.sock"

    @property
    def port(self) -> int:
        return int(json.loads((self.runtime / "http.json").read_text())["port"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def daemon_pid(self) -> int:
        return int(json.loads((self.runtime / "http.json").read_text())["pid"])

    @property
    def log_file(self) -> Path:
        return self.home / "log" / "kontextd.log"

    @property
    def database(self) -> Path:
        return self.home / "data" / "kontext.db"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10)

    def control(self) -> httpx.Client:
        """The control API over its Unix socket, as a third-party client would speak it."""
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://kontextd",
            timeout=10,
        )

    def introspect(self, token: str) -> dict[str, Any]:
        with self.http() as client:
            answer = client.post("/introspect", data={"token": token})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def jwks(self) -> dict[str, Any]:
        with self.http() as client:
            return client.get("/jwks.json").json()

    def token_for(
        self, agent: str, *exec_args: str
    ) -> tuple[subprocess.Popen[str], dict[str, str]]:
        """Start ``kontext exec`` holding a credential open; returns (process, child's env).

        The child prints its KONTEXT_* and GITHUB_TOKEN as JSON, then waits for stdin to close.
        """
        script = (
            "import json,os,sys;"
            "print(json.dumps({k:v for k,v in os.environ.items()"
            " if k.startswith(('KONTEXT_','GITHUB_','GH_','SLACK_'))}),flush=True);"
            "sys.stdin.read()"
        )
        proc = self.popen(
            "exec",
            "--agent",
            agent,
            *exec_args,
            "--",
            sys.executable,
            "-c",
            script,
            stdin=subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"exec printed nothing: {proc.stderr.read() if proc.stderr else ''}"
        return proc, json.loads(line)

    @staticmethod
    def close(proc: subprocess.Popen[str]) -> None:
        """Close a ``token_for`` process's pipes (its child exits on stdin EOF) and reap it."""
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait(timeout=10)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self.ok("daemon", "start")

    def stop(self) -> None:
        if self.socket.exists():
            self.run("daemon", "stop", timeout=30)
        pid_file = self.runtime / "kontextd.lock"
        if pid_file.exists():
            pid_text = pid_file.read_text().strip()
            if pid_text.isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_text), signal.SIGKILL)


def short_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="kx-", dir="/tmp"))


@contextmanager
def running_home() -> Iterator[Kontext]:
    """A home of its own with its daemon started; stopped and removed afterwards."""
    home = short_home()
    k = Kontext(home)
    k.start()
    yield k
    k.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def kx() -> Iterator[Kontext]:
    """A daemon shared by the whole session."""
    with running_home() as k:
        yield k


@pytest.fixture
def fresh_kx() -> Iterator[Kontext]:
    """A home of this test's own; the daemon starts on first use (or ``start()``)."""
    home = short_home()
    k = Kontext(home)
    yield k
    k.stop()
    shutil.rmtree(home, ignore_errors=True)


def confinement_missing() -> str | None:
    """Why this machine cannot confine ``kontext exec`` (it would run unconfined), or None."""
    if not sys.platform.startswith("linux"):
        return "confinement is Linux-only"
    from kontext_cli import linux

    if linux.landlock_abi() < 6:
        return f"this kernel has Landlock ABI {linux.landlock_abi()}; confinement needs 6"
    probe = subprocess.run(["unshare", "-Ur", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unprivileged user namespaces are unavailable: {probe.stderr.strip()}"
    return None


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or the deadline; returns its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: waits for a real credential expiry (10 s or more)")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Iterator[None]:
    """One line naming the tests skipped for lack of a system package, and the
    command that installs them (tests/missing_packages.py) — after pytest's own
    short summary, just above the final counts."""
    try:  # this directory is on sys.path when pytest found this file itself
        from missing_packages import summary
    except ImportError:  # loaded by name (``-p tests.conftest``) from the project's root
        from tests.missing_packages import summary

    yield

    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            reasons.append(str(longrepr[2]))
    lines = summary(reasons)
    for line in lines:
        terminalreporter.write_line(line)


NOT_CONNECTED = re.compile(
    r"kontext: warning: [a-z][a-z0-9-]* is not connected: its calls through the gateway "
    r"will fail until you run 'kontext integration connect [a-z][a-z0-9-]*'\n"
)


def without_not_connected(stderr: str) -> str:
    """``stderr`` minus exec's "not connected" warnings: the test agents' integrations
    (GitHub, Slack) are not connected unless a test connects them, and exec says so."""
    return NOT_CONNECTED.sub("", stderr)


def quiet(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``proc`` with exec's "not connected" warnings taken out of its stderr."""
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout, without_not_connected(proc.stderr)
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert ``proc`` failed with ``code`` and exactly one ``kontext: `` line; return it."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kontext: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def api_audit(k: Kontext, agent: str | None = None, n: int = 10000) -> list[dict[str, Any]]:
    """The newest audit events over the control API: what ``Kontext.audit`` shows, sooner."""
    params: dict[str, Any] = {"last": n, **({"agent": agent} if agent else {})}
    with k.control() as api:
        return list(api.get("/v1/audit", params=params).json()["events"])


def api_agent(k: Kontext, name: str) -> dict[str, Any]:
    """One agent as ``kontext agent show NAME --json`` prints it, over the control API."""
    with k.control() as api:
        return dict(api.get(f"/v1/agents/{name}").json())


def api_new_agent(
    k: Kontext,
    *allow: str,
    prefix: str = "agent",
    display_name: str | None = None,
    max_ttl: int | None = None,
    consent: bool = True,
) -> str:
    """Like ``Kontext.agent`` but over the control API, for tests where creating is incidental."""
    name = f"{prefix}-{os.getpid()}-{next(_names)}"
    body: dict[str, Any] = {"name": name, "allow": list(allow or ("github:pulls:read",))}
    if display_name is not None:
        body["display_name"] = display_name
    if max_ttl is not None:
        body["max_ttl"] = max_ttl
    with k.control() as api:
        answer = api.post("/v1/agents", json=body)
    assert answer.status_code == 201, answer.text
    if consent:
        approve_over_http(k, name, body["allow"])
    return name


def approve_over_http(
    k: Kontext,
    agent: str,
    scopes: list[str],
    *,
    target: str | None = None,
    duration: int = 86400,
) -> None:
    """The consent flow in-process, quicker than the CLI: push the request with the
    client secret, read the page's CSRF token, click Approve, have the daemon redeem
    the code (``POST /v1/consent/redeem``)."""
    secret = (k.runtime / "oauth-client-secret").read_text().strip()
    client_id = f"agent:{agent}"
    auth = (client_id.replace(":", "%3A"), secret)
    verifier = base64.urlsafe_b64encode(os.urandom(40)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    redirect = "http://127.0.0.1:9/callback/harness"
    with k.http() as http:
        pushed = http.post(
            "/par",
            auth=auth,
            data={
                "response_type": "code",
                "redirect_uri": redirect,
                "scope": " ".join(scopes),
                "code_challenge": challenge.rstrip(b"=").decode(),
                "code_challenge_method": "S256",
                "grant_duration": str(duration),
                **({"target": target} if target is not None else {}),
            },
        )
        assert pushed.status_code == 201, pushed.text
        uri = pushed.json()["request_uri"]
        page = http.get("/authorize", params={"client_id": client_id, "request_uri": uri}).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None, page
        decided = http.post(
            "/authorize",
            data={"request_uri": uri, "csrf": csrf.group(1), "decision": "approve"},
            headers={"Origin": k.base_url},
        )
        code = dict(urllib.parse.parse_qsl(decided.headers["location"].split("?", 1)[1]))["code"]
    # As ``kontext consent grant`` does: the daemon redeems the code into a grant.
    with k.control() as api:
        redeemed = api.post(
            "/v1/consent/redeem",
            json={
                "agent": client_id,
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": redirect,
            },
        )
    assert redeemed.status_code == 200, redeemed.text


@contextmanager
def gateway_daemon(upstream_url: str, api_key: str) -> Iterator[Kontext]:
    """A daemon of its own whose GitHub integration points at ``upstream_url`` (a fake
    GitHub), connected with ``api_key`` the way a user would (``--secret-stdin``)."""
    k = Kontext(short_home())
    (k.home / "config").mkdir(mode=0o700)
    (k.home / "config" / "config.toml").write_text(
        f'[integrations.github]\nbase_url = "{upstream_url}"\n'
    )
    k.start()
    try:
        k.ok("integration", "connect", "github", "--secret-stdin", input=api_key + "\n")
        yield k
    finally:
        k.stop()
        shutil.rmtree(k.home, ignore_errors=True)


def os_user() -> str:
    """``user:LOGIN@HOST`` of this uid, from the password database: who the embedded
    issuer signs in (nothing typed on its page changes it)."""
    import pwd
    import socket

    return f"user:{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"
