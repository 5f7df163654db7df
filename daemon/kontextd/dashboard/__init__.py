"""The dashboard: every agent, grant and live credential at a glance, revocable from a browser.

Served by the daemon on its loopback port under ``/dashboard``:

- ``access``: one-time links (asked for over the control socket by ``kontext
  dashboard``), session cookies and CSRF tokens, in memory only;
- ``routes``: the pages, the JSON they load, the actions, and the checks every
  request passes (peer uid, session, Fetch Metadata, CSRF, Origin);
- ``views``: what each page shows; ``actions``: what its buttons do (audited
  ``via: dashboard``); ``selection``: the Activity page's filters;
- ``stream``: the live audit stream (SSE), one reader for every open page;
- ``verify``: ``audit verify``'s result for the Activity page;
- ``processes``: the command line of a credential's process, secrets redacted;
- ``pages`` and ``static/``: a small HTML shell per page, and same-origin
  scripts and a stylesheet (no framework, no CDN, no inline script).
"""
