"""``kontext doctor``: what is wrong with this set-up, and how to fix each thing.

Each check is a small function returning a ``Check``: ``ok``, ``warn`` (works,
but worth knowing), ``fail`` (something will not work) or ``skip`` (could not
be checked, e.g. the daemon is not running). ``local`` checks need nothing but
the files; ``live`` checks ask the running daemon. Nothing here starts kontextd
or changes anything, except ``--fix``: it restarts a daemon older than the CLI
and tightens loose file modes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, what was found, and the fix when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


def ok(name: str, detail: str) -> Check:
    return Check(name, OK, detail)


def warn(name: str, detail: str, fix: str | None = None) -> Check:
    return Check(name, WARN, detail, fix)


def fail(name: str, detail: str, fix: str | None = None) -> Check:
    return Check(name, FAIL, detail, fix)


def skip(name: str, detail: str) -> Check:
    return Check(name, SKIP, detail)
