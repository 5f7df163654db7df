#!/usr/bin/env python3
"""A stand-in browser for ``$BROWSER``: open a URL and answer its forms like a person.

``webbrowser`` runs ``$BROWSER URL``. This script GETs the URL, and while the
page holds a form it fills it in and submits it (following redirects, keeping
cookies, sending ``Origin`` as a browser does) — our login and consent pages,
or a third-party provider's login and consent pages. It ends on the page that
has no form: the CLI's callback.

Environment: ``KX_DECISION`` (approve|deny, default approve), ``KX_EMAIL``,
``KX_NAME``, ``KX_LOGIN``/``KX_PASSWORD`` (for a provider's login form),
``KX_BROWSER_LOG`` (append each visited path, for tests). ``KX_IDLE_CONNECTIONS=N``
opens N connections to the CLI's callback port that never send a byte (as a
real browser's speculative pre-connects do), held open by a forked process for
``KX_IDLE_HOLD`` seconds (default 60), before following the redirect there;
``KX_ABANDON=1`` then stops short of the callback, like a person who walks away.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.parse
from html.parser import HTMLParser

import httpx


class Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {
                    "action": a.get("action", ""),
                    "method": a.get("method", "get"),
                    "inputs": [],
                    "buttons": [],
                }
            )
        elif self.forms and tag == "input":
            self.forms[-1]["inputs"].append(a)  # type: ignore[union-attr]
        elif self.forms and tag == "button":
            self.forms[-1]["buttons"].append(a)  # type: ignore[union-attr]


def fill(form: dict[str, object]) -> dict[str, str]:
    values: dict[str, str] = {}
    defaults = {
        "email": os.environ.get("KX_EMAIL"),
        "name": os.environ.get("KX_NAME"),
        "login": os.environ.get("KX_LOGIN", "alice"),
        "password": os.environ.get("KX_PASSWORD", "any-password"),
    }
    for field in form["inputs"]:  # type: ignore[union-attr]
        name = field.get("name")
        if not name or field.get("type") in ("submit", "checkbox"):
            continue
        preset = defaults.get(name)
        values[name] = preset if preset is not None else field.get("value", "")
    decision = os.environ.get("KX_DECISION", "approve")
    buttons = [b for b in form["buttons"] if b.get("name")]  # type: ignore[union-attr]
    chosen = next((b for b in buttons if b.get("value") == decision), None)
    if chosen is None and buttons and decision == "approve":
        chosen = buttons[0]
    if chosen is not None:
        values[chosen["name"]] = chosen.get("value", "")
    return values


class Abandoned(Exception):
    """KX_ABANDON: the person walked away before the callback."""


def _before_callback(response: httpx.Response) -> None:
    """An event hook: idle connections to the callback's port, then maybe walk away."""
    location = response.headers.get("location", "")
    if not response.is_redirect or "/callback" not in location:
        return
    count = int(os.environ.get("KX_IDLE_CONNECTIONS", "0"))
    target = urllib.parse.urlsplit(location)
    idle = [
        socket.create_connection((target.hostname or "127.0.0.1", target.port or 80))
        for _ in range(count)
    ]
    if idle and os.fork() == 0:  # the holder keeps them open after this "browser" returns
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # not the CLI's pipes: a test reading them would wait for us
            os.dup2(devnull, fd)
        time.sleep(float(os.environ.get("KX_IDLE_HOLD", "60")))
        os._exit(0)
    if os.environ.get("KX_ABANDON"):
        raise Abandoned


def main(url: str) -> int:
    log = os.environ.get("KX_BROWSER_LOG")
    hooks = {"response": [_before_callback]}
    with httpx.Client(timeout=30, follow_redirects=True, event_hooks=hooks) as client:
        try:
            return _browse(client, url, log)
        except Abandoned:
            return 0


def _browse(client: httpx.Client, url: str, log: str | None) -> int:
    page = client.get(url)
    for _ in range(12):
        if log:
            with open(log, "a") as fh:
                fh.write(f"{page.status_code} {page.url.path}\n")
        parser = Forms()
        parser.feed(page.text)
        if not parser.forms or page.status_code >= 400:
            return 0 if page.status_code < 400 else 1
        form = parser.forms[0]
        target = urllib.parse.urljoin(str(page.url), str(form["action"]) or str(page.url))
        origin = f"{page.url.scheme}://{page.url.netloc.decode()}"
        if str(form["method"]).lower() == "post":
            page = client.post(target, data=fill(form), headers={"Origin": origin})
        else:
            page = client.get(target, params=fill(form))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[-1]))
