"""Shared parts of the dashboard tests: a session opened from a one-time link, an agent
holding a credential (and calling the fake GitHub on demand), the Chromium launch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Kontext

HERE = Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
CSRF = re.compile(r'<meta name="kontext-csrf" content="([^"]+)">')


def link(k: Kontext) -> str:
    """``kontext dashboard --no-browser``: the one-time link it prints."""
    url = k.ok("dashboard", "--no-browser").stdout.strip()
    assert re.fullmatch(rf"{re.escape(k.base_url)}/dashboard/open\?t=[\w-]{{40,}}", url), url
    return url


@dataclass
class Session:
    """A dashboard session as a browser holds it: the cookie and the page's CSRF token."""

    k: Kontext
    cookie: str  # "name=value"
    csrf: str

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Cookie": self.cookie, **extra}

    def get(self, path: str, **headers: str) -> httpx.Response:
        with self.k.http() as http:
            return http.get(path, headers=self.headers(**headers))

    def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        fields = {"X-Kontext-CSRF": self.csrf, "Content-Type": "application/json", **headers}
        with self.k.http() as http:
            return http.post(path, content=json.dumps(body), headers=self.headers(**fields))


def open_session(k: Kontext) -> Session:
    """Redeem a fresh link over HTTP, as the browser would, and read the CSRF token."""
    url = link(k)
    with k.http() as http:
        opened = http.get(url.removeprefix(k.base_url))
        assert opened.status_code == 303, opened.text
        cookie = opened.headers["set-cookie"].split(";")[0]
        page = http.get("/dashboard/", headers={"Cookie": cookie})
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return Session(k, cookie, found.group(1))


class Agent:
    """``kontext exec --agent NAME -- agent_child.py``: holds a credential until closed;
    ``call()`` makes its next gateway call and returns the HTTP status."""

    def __init__(
        self,
        k: Kontext,
        name: str,
        *exec_args: str,
        command: tuple[str, ...] = (sys.executable, str(HERE / "agent_child.py")),
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.proc = k.popen(
            "exec",
            "--agent",
            name,
            "--target",
            "acme/backend",
            *exec_args,
            "--",
            *command,
            stdin=subprocess.PIPE,
            cwd=cwd,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", (line, self.proc.stderr.read() if self.proc.stderr else "")
        self.env: dict[str, str] = json.loads(self.proc.stdout.readline())

    def call(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("call\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> int:
        Kontext.close(self.proc)
        return self.proc.returncode

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.close()
