"""SQL for the public OAuth clients that registered themselves (RFC 7591).

Like ``oauth_sql``, a companion of ``db.Store``: it uses the store's lock and
connection. A registration holds no secret: a public client proves nothing at
registration, so its row is only what it claimed (name, redirect URIs) and
which OS user's process sent it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from kontextd.store.db import Store

COLUMNS = (
    "client_id, name, redirect_uris, grant_types, client_uri, software_id, "
    "registered_by, created_at, used_at"
)


@dataclass(frozen=True)
class ClientRow:
    """One registered public client, as it asked to be registered."""

    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    client_uri: str | None
    software_id: str | None
    registered_by: int | None
    created_at: float
    used_at: float | None = None


def _row(row: Any) -> ClientRow:
    values = dict(row)
    values["redirect_uris"] = tuple(json.loads(values["redirect_uris"]))
    values["grant_types"] = tuple(values["grant_types"].split())
    return ClientRow(**values)


class ClientStore:
    """Reads and writes of ``oauth_clients``, on the one ``Store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, row: ClientRow) -> None:
        with self.store.connection() as conn:
            conn.execute(
                f"INSERT INTO oauth_clients ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    row.client_id,
                    row.name,
                    json.dumps(list(row.redirect_uris)),
                    " ".join(row.grant_types),
                    row.client_uri,
                    row.software_id,
                    row.registered_by,
                    row.created_at,
                    row.used_at,
                ),
            )

    def get(self, client_id: str) -> ClientRow | None:
        with self.store.connection() as conn:
            found = conn.execute(
                f"SELECT {COLUMNS} FROM oauth_clients WHERE client_id = ?",  # noqa: S608
                (client_id,),
            ).fetchone()
        return _row(found) if found is not None else None

    def count(self) -> int:
        with self.store.connection() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM oauth_clients").fetchone()[0])

    def touch(self, client_id: str) -> None:
        """Record that the user approved this client (it is kept past the purge)."""
        with self.store.connection() as conn:
            conn.execute(
                "UPDATE oauth_clients SET used_at = ? WHERE client_id = ?",
                (time.time(), client_id),
            )

    def purge_unused(self, older_than: float) -> int:
        """Forget registrations never approved and older than ``older_than`` (epoch)."""
        with self.store.connection() as conn:
            return int(
                conn.execute(
                    "DELETE FROM oauth_clients WHERE used_at IS NULL AND created_at < ?",
                    (older_than,),
                ).rowcount
            )

    def evict_oldest_unused(self) -> bool:
        """Forget the oldest registration never approved; False if there is none."""
        with self.store.connection() as conn:
            return (
                conn.execute(
                    "DELETE FROM oauth_clients WHERE client_id = (SELECT client_id FROM "
                    "oauth_clients WHERE used_at IS NULL ORDER BY created_at LIMIT 1)"
                ).rowcount
                > 0
            )
