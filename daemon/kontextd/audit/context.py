"""Where a change came from, for the audit: ``via: dashboard`` on what a dashboard did.

A handler that acts for the dashboard runs its work inside ``with via("dashboard"):``;
every audit event appended meanwhile, on that thread (a context variable, so other
requests and threads are untouched), carries ``"via": "dashboard"``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

VIA: contextvars.ContextVar[str | None] = contextvars.ContextVar("kontextd_via", default=None)


@contextmanager
def via(name: str) -> Iterator[None]:
    """Mark every audit event appended inside the block as caused through ``name``."""
    token = VIA.set(name)
    try:
        yield
    finally:
        VIA.reset(token)
