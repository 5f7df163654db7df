"""``kontext audit tail``: a fast path that skips typer and rich.

People pipe ``audit tail`` into grep and scripts, and the CLI's start-up (typer,
rich: ~150 ms) dwarfed the daemon's ~2 ms answer. So, like ``kontext exec``,
the plain argument forms are parsed here with the standard library only, and
anything else — ``--help``, ``-f``, ``--since``, an unknown option, a value
that is not plainly valid — returns None from ``parse_fast`` and goes through
the one typer definition in ``kontext_cli.commands.audit``, so help text and
usage errors have one source.

Both roads print through ``show`` here (lines from ``kontext_cli.auditline``),
so the fast path writes exactly the bytes the typer path writes, on a pipe and
on a terminal; tests compare them both ways.
"""

from __future__ import annotations

import sys
import urllib.parse

from kontext.common import paths, validate
from kontext.common.events import check as check_event
from kontext_cli import client, errors, wirejson
from kontext_cli.auditline import Lines

TYPE_CHECKING = False  # typing costs ~3-5 ms to import; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

# The value options the fast path takes, and the query parameter each becomes.
VALUE_OPTIONS = {"--agent": "agent", "--user": "user", "--event": "event"}
LINES_OPTIONS = ("-n", "--lines")
MAX_LINES = 10000  # typer's IntRange(1, 10000) on -n


class TailRequest:
    """``audit tail`` as typed, already checked to be a plain, valid form."""

    __slots__ = ("as_json", "filters", "lines")

    def __init__(self, lines: int, filters: dict[str, str], as_json: bool) -> None:
        self.lines = lines
        self.filters = filters
        self.as_json = as_json


def _count(value: str) -> int | None:
    """``-n``'s value when it is plain decimal digits within typer's range."""
    if not value or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if 1 <= number <= MAX_LINES else None


def parse_fast(argv: list[str]) -> TailRequest | None:
    """Parse ``audit tail``'s arguments for the plain case; None means "let typer do it"."""
    lines, as_json, i = 20, False, 0
    filters: dict[str, str] = {}
    seen: set[str] = set()
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if argv[i] == "--json":
            as_json = True
        elif name not in LINES_OPTIONS and name not in VALUE_OPTIONS:
            return None
        elif eq and not name.startswith("--"):
            return None  # click reads -n=5 as "=5"
        elif not eq and i + 1 == len(argv):
            return None  # a missing value
        else:
            if not eq:
                i += 1
                value = argv[i]
            if not value or value.startswith("-"):
                return None  # empty, or an option click might take as the value
            if name in LINES_OPTIONS:
                count = _count(value)
                if count is None:
                    return None
                lines = count
            else:
                filters[VALUE_OPTIONS[name]] = value
        if name in seen or (name in LINES_OPTIONS and seen.intersection(LINES_OPTIONS)):
            return None  # repeated: typer takes the last, we take no chances
        seen.add(name)
        i += 1
    return TailRequest(lines, filters, as_json)


def _query(filters: dict[str, str]) -> str:
    """The same query string ``commands.audit.tail`` sends (agent checked the same way)."""
    params = dict(filters)
    try:
        if "agent" in params:
            params["agent"] = validate.agent_name(params["agent"])
        if "event" in params:
            check_event(params["event"])
    except validate.InvalidInput as exc:
        raise errors.UsageError(str(exc)) from exc
    ordered: dict[str, str] = {k: params[k] for k in ("agent", "user", "event") if k in params}
    query = urllib.parse.urlencode(ordered)
    return query + "&" if query else ""


def _write(lines: list[str]) -> None:
    """Write lines and flush; a closed pipe (``| head -1``) ends quietly with status 141.

    Line by line into the stream's buffer, which the kernel gets in buffer-sized
    writes: one huge write() to a pipe whose reader has gone returns short
    instead of failing, and the closed pipe would go unnoticed.
    """
    try:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise SystemExit(errors.output_closed()) from None


def show(events: list[dict[str, Any]], as_json: bool, lines: Lines | None = None) -> None:
    """Print events: one JSON object per line, or one line each from ``lines``."""
    if as_json:
        rendered = [wirejson.dumps_sorted(e) for e in events]
    else:
        rendered = (lines or Lines(sys.stdout)).batch(events)
    _write(rendered)


def run(req: TailRequest) -> int:
    query = _query(req.filters)
    with client.connect(paths.resolve(), autostart=True) as conn:
        answer = conn.call("GET", f"/v1/audit?{query}last={req.lines}")
    show(answer["events"], req.as_json)
    return 0
