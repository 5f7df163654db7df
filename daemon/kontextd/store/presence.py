"""Is the database file still there, and still the one this daemon writes?

SQLite writes through the file it opened. Remove ``kontext.db`` while kontextd
runs and every write goes on into the unlinked inode — accepted, then gone at
the next start, with an empty log in its place. So:

- ``FileWatch`` compares the path's ``st_dev``/``st_ino`` with the file opened
  (one ``stat``, before every commit and about once a second in the reaper);
  once the file was removed or replaced, every commit is refused with one line
  and ``kontext doctor`` names the file.
- ``check_missing`` runs before the database is opened: a home whose audit
  anchor (pinned outside the database, ``kontextd.audit.anchor``) says it had a
  log never gets a new empty database silently — only with ``--new-database``,
  and the new log then records what was abandoned.

Whoever deletes the anchor along with the database (with the file fallback both
live under ``data/``) starts a new home; SECURITY.md says so.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

log = logging.getLogger("kontextd.store")
NEW_DATABASE = "kontext daemon start --new-database"


class MissingHistory(RuntimeError):
    """The database is missing but this home had one: refuse to start a new one."""


class FileWatch:
    """The identity of the database file as opened, and whether the path still has it."""

    def __init__(self, path: str) -> None:
        self.path = path
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino)
        self.lost: str | None = None

    def check(self) -> str | None:
        """Why writes must stop (the file was removed or replaced), or None."""
        if self.lost is not None:
            return self.lost
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            what = "was removed"
        except OSError:
            return None  # cannot tell now (e.g. a permission change): not a loss
        else:
            if (st.st_dev, st.st_ino) == self._identity:
                return None
            what = "was replaced by another file"
        self.lost = (
            f"the database {self.path} {what} while kontextd was running; nothing more is "
            "written (restore it and restart kontextd, or start anew: 'kontext daemon stop', "
            f"then '{NEW_DATABASE}')"
        )
        log.error("%s", self.lost)
        return self.lost


def check_missing(path: str, anchor: Any, new_database: bool) -> dict[str, Any] | None:
    """Before opening ``path``: refuse a new empty database where one with history is
    missing. ``anchor`` is the home's audit anchor (None: never pinned, a new home).
    With ``new_database`` returns what is abandoned, for the new log's first events."""
    if os.path.exists(path):
        if new_database:
            raise MissingHistory(
                f"{path} exists: --new-database starts a new database only where one is "
                "missing (move this one away first)"
            )
        return None
    if anchor is None:
        return None  # a new home (or one whose anchor went with it)
    pinned = getattr(anchor, "checkpoint", None)
    history = (
        f"its audit anchor names event {pinned.event_id}, signed "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(pinned.ts))}"
        if pinned is not None
        else "its audit anchor pins its signing key"
    )
    if not new_database:
        raise MissingHistory(
            f"the database {path} is missing, but this home had one ({history}); restore it "
            f"from a backup, or start a new empty one with '{NEW_DATABASE}' (its audit "
            "history is then abandoned, and the new log says so)"
        )
    return {
        "event_id": pinned.event_id if pinned else None,
        "event_hash": pinned.event_hash if pinned else None,
        "signed_at": pinned.ts if pinned else None,
    }
