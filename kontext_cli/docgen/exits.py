"""Exit statuses, read from ``kontext_cli.errors``' docstring and checked against the classes."""

from __future__ import annotations

import re

from kontext_cli import errors

# ---------------------------------------------------------------------------
# Exit statuses, read from kontext_cli.errors
# ---------------------------------------------------------------------------

# The exec-only statuses, keyed by the constants so their numbers cannot drift.
EXEC_STATUSES = (
    (errors.EXEC_DENIED, "The request path denied the credential; the command did not run."),
    (
        errors.EXEC_FAILED,
        "Any other kontext error before the command ran (bad usage, daemon "
        "unavailable, unknown agent, ...).",
    ),
    (errors.EXEC_NOT_EXECUTABLE, "The command was found but could not be executed."),
    (errors.EXEC_NOT_FOUND, "The command was not found."),
)

_TREE_LINE = re.compile(r"^[\s│├└─]*(?P<cls>[A-Z]\w+)\s+(?P<code>\d+)\s+(?P<text>.+)$")


def exit_statuses() -> list[tuple[int, str]]:
    """``(code, meaning)`` from the hierarchy drawn in ``errors``' docstring.

    Each line is checked against the class it names, so the table and the code
    cannot disagree; success (0) is added in front.
    """
    table = [(0, "success")]
    for line in (errors.__doc__ or "").splitlines():
        match = _TREE_LINE.match(line)
        if not match:
            continue
        cls = getattr(errors, match["cls"], None)
        code = int(match["code"])
        if not (isinstance(cls, type) and issubclass(cls, errors.KontextError)):
            raise ValueError(f"errors' docstring names unknown class {match['cls']}")
        if cls.exit_code != code:
            raise ValueError(
                f"errors' docstring says {cls.__name__} is {code}, code says {cls.exit_code}"
            )
        text = match["text"].strip()
        table.append((code, text.rstrip(".")))
    if len(table) < 2:
        raise ValueError("found no exit statuses in kontext_cli.errors' docstring")
    return sorted(table)
