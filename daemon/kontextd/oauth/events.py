"""Audit events of login, consent and the authorization server (never a secret)."""

from __future__ import annotations

from typing import Any

from kontextd.core import Core


def record(core: Core, event: str, **fields: Any) -> None:
    with core.store.transaction() as tx:
        tx.append_event({"event": event, "user": core.user_ref(), **fields})
