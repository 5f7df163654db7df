"""The dashboard's HTML: one small shell per page; its script fetches and renders the data.

No data but the page's name and the user's id is rendered here, so nothing from
the audit log or an agent ever passes through an HTML template: the scripts put
every value in with ``textContent`` (and the CSP forbids them ``innerHTML``:
``require-trusted-types-for 'script'``). Scripts and styles are same-origin files
(``static/``), never inline, never from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

STATIC = "/dashboard/static"


@dataclass(frozen=True)
class Page:
    """One section of the dashboard: its path, its name in the navigation, its lede."""

    key: str
    path: str
    title: str
    lede: str


PAGES = (
    Page("overview", "/dashboard/", "Overview", "Every agent, what it may do and what it did."),
    Page(
        "credentials",
        "/dashboard/credentials",
        "Live credentials",
        "Every credential alive now, the process that holds it, and when it ends.",
    ),
    Page(
        "grants",
        "/dashboard/grants",
        "Consent grants",
        "What you approved for each agent in this session.",
    ),
    Page(
        "activity",
        "/dashboard/activity",
        "Activity",
        "The audit trail as it is written, with every layer's verdict.",
    ),
    Page(
        "integrations",
        "/dashboard/integrations",
        "Integrations",
        "Upstream APIs: connected or not, and how calls reach them.",
    ),
    Page(
        "policy",
        "/dashboard/policy",
        "Policy",
        "The organisation's Cedar policy, and a dry run of any request.",
    ),
)
BY_PATH = {page.path: page for page in PAGES}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)


def _text(value: str) -> str:
    """Escaped for an element's text (quotes need no escaping there)."""
    return escape(value, quote=False)


def security_headers(content_type: str = "text/html; charset=utf-8") -> dict[str, str]:
    """Every dashboard answer's headers: a strict CSP, no framing, no caching, no referrer,
    and no reading by another origin (CORP) or another window (COOP)."""
    return {
        "Content-Type": content_type,
        "Content-Security-Policy": CSP,
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), clipboard-read=()",
    }


def _nav(current: Page) -> str:
    items = []
    for page in PAGES:
        here = ' aria-current="page"' if page is current else ""
        items.append(f'<li><a href="{page.path}"{here}>{escape(page.title)}</a></li>')
    return f'<nav class="sections" aria-label="Dashboard sections"><ul>{"".join(items)}</ul></nav>'


def shell(page: Page, csrf: str, user: str) -> str:
    """The page: header, navigation, a heading and an empty region the script fills."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="kontext-csrf" content="{escape(csrf)}">'
        f"<title>{escape(page.title)} · kontext dashboard</title>"
        f'<link rel="icon" href="{STATIC}/icon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{STATIC}/dashboard.css">'
        f'<script type="module" src="{STATIC}/dashboard.js"></script>'
        f'</head><body data-page="{page.key}">'
        '<a class="skip" href="#main">Skip to content</a>'
        '<header class="top"><div class="brand"><span class="mark" aria-hidden="true">k</span>'
        '<span>kontext <span class="thin">dashboard</span></span></div>'
        f'<div class="who"><span class="user">{escape(user)}</span>'
        '<button type="button" id="sign-out" class="quiet">Sign out</button></div></header>'
        f"{_nav(page)}"
        f'<main id="main" tabindex="-1"><div class="heading"><h1>{escape(page.title)}</h1>'
        f'<p class="lede">{escape(page.lede)}</p></div>'
        '<div id="notice" role="status" aria-live="polite"></div>'
        '<div id="content" aria-busy="true"><p class="loading">Loading…</p></div></main>'
        '<dialog id="confirm" aria-labelledby="confirm-title" aria-describedby="confirm-text">'
        '<form method="dialog"><h2 id="confirm-title">Confirm</h2><p id="confirm-text"></p>'
        '<div class="buttons"><button value="cancel" class="quiet">Cancel</button>'
        '<button value="confirm" id="confirm-yes" class="danger">Confirm</button></div>'
        "</form></dialog>"
        "<noscript><p>The dashboard needs JavaScript (same-origin scripts only).</p></noscript>"
        "</body></html>"
    )


def message_page(title: str, text: str, hint: str) -> str:
    """A page with no session: an expired link, a second use, no cookie."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · kontext dashboard</title>"
        f'<link rel="icon" href="{STATIC}/icon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{STATIC}/dashboard.css"></head>'
        '<body class="message"><main id="main"><div class="card">'
        f"<h1>{_text(title)}</h1><p>{_text(text)}</p>"
        f'<p class="hint">{_text(hint)}</p></div></main></body></html>'
    )
