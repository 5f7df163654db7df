"""Points in time typed by users: ``2024-05-01``, ``2024-05-01T14:30``, or an age like ``7d``.

Dates and times without a zone are local time; an age means that long ago.
"""

from __future__ import annotations

import datetime as dt
import re
import time

from kontext.common.validate import UNIT_SECONDS, InvalidInput

AGE = re.compile(r"(?:\d{1,6}[smhd])+")
AGE_PART = re.compile(r"(\d{1,6})([smhd])")


def parse(value: str, *, now: float | None = None) -> float:
    """Unix seconds for an ISO 8601 date/time or an age (``30m``, ``2h``, ``7d``)."""
    current = time.time() if now is None else now
    text = value.strip()
    if AGE.fullmatch(text):
        return current - sum(int(n) * UNIT_SECONDS[u] for n, u in AGE_PART.findall(text))
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise InvalidInput(
            f"invalid time {shown!r}: use a date (2024-05-01), a date and time "
            "(2024-05-01T14:30, local unless it ends in Z or +HH:MM) or an age (30m, 7d)"
        ) from None
    return parsed.timestamp()  # naive datetimes are local time (datetime.timestamp)
