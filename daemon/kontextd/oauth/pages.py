"""The HTML pages of the embedded issuer: login, consent, errors.

Plain server-rendered forms, readable without JavaScript, with no external
resources. Every page is sent with headers that forbid framing (clickjacking an
Approve button) and leaking the URL (which carries a request_uri) as a referrer.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from kontext.common.integrations import Integration

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1b1b1b}h1{font-size:1.3rem}ul{padding-left:1.2rem}"
    "button{font-size:1rem;padding:.4rem 1.2rem;margin-right:.6rem}"
    "label{display:block;margin:.6rem 0}input{font-size:1rem;width:100%}"
    ".muted{color:#555}input[type=radio]{width:auto;margin-right:.4rem}"
    ".warn{background:#fff4d6;border-left:4px solid #b37400;padding:.4rem .8rem}"
    ".error{color:#a00000}select{font-size:1rem}"
)
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()


def security_headers(form_target: str | None = None) -> dict[str, str]:
    """CSP without external sources; the form may post to us and redirect to the CLI."""
    form_action = "'self'" + (f" {form_target}" if form_target else "")
    return {
        "Content-Type": "text/html; charset=utf-8",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action {form_action}; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


def page(title: str, body: str) -> str:
    """A whole page with the shared stylesheet (the only style the CSP allows)."""
    return _page(title, body)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def _hidden(request_uri: str, csrf: str) -> str:
    return (
        f'<input type="hidden" name="request_uri" value="{escape(request_uri)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
    )


def _buttons(approve: str) -> str:
    return (
        f'<p><button type="submit" name="decision" value="approve">{escape(approve)}</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></p>'
    )


def error_page(message: str) -> str:
    return _page(
        "kontext: request refused",
        f"<h1>This request was refused</h1><p>{escape(message)}</p>"
        '<p class="muted">Nothing was approved. You can close this tab.</p>',
    )


def login_page(request_uri: str, csrf: str, account: str) -> str:
    """The embedded issuer's sign-in: it names the OS account and asks for nothing
    typed — the user it asserts is that account (an identity from elsewhere needs
    ``kontext login --issuer``)."""
    return _page(
        "Sign in to kontext",
        "<h1>Sign in to kontext</h1>"
        f"<p>Sign in as the local account <strong>{escape(account)}</strong>?</p>"
        "<p>kontext's own issuer vouches only for the account it runs as. To sign in "
        "as someone else, use your organisation's provider: "
        "<code>kontext login --issuer URL</code>.</p>"
        '<form method="post" action="/authorize">'
        f"{_hidden(request_uri, csrf)}"
        f"{_buttons('Sign in')}</form>",
    )


def expires_in(seconds: int) -> str:
    """``Expires in 1 hour``, ``Expires in 30 minutes``, ``Expires in 7 days``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"Expires in {count} {unit}{'s' if count != 1 else ''}"
    return f"Expires in {seconds} seconds"


def scope_lines(scopes: tuple[str, ...], catalogue: dict[str, Integration]) -> list[str]:
    lines = []
    for scope in scopes:
        integration, _, name = scope.partition(":")
        entry = catalogue.get(integration)
        lines.append(entry.describe(name) if entry else scope)
    return lines


def not_granted(scopes: tuple[str, ...], catalogue: dict[str, Integration]) -> list[str]:
    """What the agent will not get: the rest of each integration's vocabulary."""
    lines: list[str] = []
    for integration in sorted({s.partition(":")[0] for s in scopes}):
        entry = catalogue.get(integration)
        if entry is None:
            continue
        rest = [d for n, d in entry.scopes.items() if f"{integration}:{n}" not in scopes]
        lines.extend(f"No access to: {d}" for d in rest)
    lines.append("No org admin access")
    return lines


def consent_page(
    request_uri: str,
    csrf: str,
    agent_display: str,
    agent_id: str,
    user: str,
    granted: list[str],
    refused: list[str],
    target: str | None,
    duration: int,
) -> str:
    items = "".join(f"<li>{escape(x)}</li>" for x in granted)
    nots = "".join(f"<li>{escape(x)}</li>" for x in refused)
    where = escape(target) if target else "any target"
    return _page(
        f"{agent_display} is requesting access",
        f"<h1>{escape(agent_display)} is requesting access:</h1>"
        f'<p class="muted">{escape(agent_id)}, acting for {escape(user)}</p>'
        f"<ul>{items}</ul><p>Not granted:</p><ul>{nots}</ul>"
        f"<p>Target: <strong>{where}</strong></p><p>{escape(expires_in(duration))}</p>"
        f'<form method="post" action="/authorize">{_hidden(request_uri, csrf)}'
        f"{_buttons('Approve')}</form>",
    )
