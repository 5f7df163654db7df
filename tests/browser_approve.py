#!/usr/bin/env python3
"""A stand-in browser for ``$BROWSER``: open a URL and answer its forms like a person.

``webbrowser`` runs ``$BROWSER URL``. This script GETs the URL, and while the
page holds a form it fills it in and submits it (following redirects, keeping
cookies, sending ``Origin`` as a browser does) — our login and consent pages,
or a third-party provider's login and consent pages. It ends on the page that
has no form: the CLI's callback.

Environment: ``KX_DECISION`` (approve|deny, default approve), ``KX_EMAIL``,
``KX_NAME``, ``KX_LOGIN``/``KX_PASSWORD`` (for a provider's login form),
``KX_BROWSER_LOG`` (append each visited path, for tests).
"""

from __future__ import annotations

import os
import sys
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


def main(url: str) -> int:
    log = os.environ.get("KX_BROWSER_LOG")
    with httpx.Client(timeout=30, follow_redirects=True) as client:
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
