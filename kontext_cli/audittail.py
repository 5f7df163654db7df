"""``kontext audit tail``: the event line, and a fast path that skips typer and rich.

People pipe ``audit tail`` into grep and scripts, and the CLI's start-up (typer,
rich: ~150 ms) dwarfed the daemon's ~2 ms answer. So, like ``kontext exec``,
the plain argument forms are parsed here with the standard library only, and
anything else — ``--help``, ``-f``, ``--since``, an unknown option, a value
that is not plainly valid — returns None from ``parse_fast`` and goes through
the one typer definition in ``kontext_cli.commands.audit``, so help text and
usage errors have one source.

The fast path writes exactly the bytes the typer path writes. Text lines go
through rich there, on a console without styles, markup, highlighting or
wrapping, so rich prints plain text unchanged — on a pipe and on a terminal
alike — except for tabs, a few control characters and ``:emoji:`` codes.
``plain`` spots those, and such a line is handed to rich after all. (A person
at a terminal is who runs ``audit tail`` most; tests compare both paths' bytes
through a pseudo-terminal too.)
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse

from kontext.common import paths, validate
from kontext_cli import client, errors

TYPE_CHECKING = False  # typing costs ~3-5 ms to import; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

# The value options the fast path takes, and the query parameter each becomes.
VALUE_OPTIONS = {"--agent": "agent", "--user": "user", "--event": "event"}
LINES_OPTIONS = ("-n", "--lines")
MAX_LINES = 10000  # typer's IntRange(1, 10000) on -n
# rich strips these (rich.control.strip_control_codes) and expands tabs.
RICH_CHANGES = frozenset("\x07\x08\x0b\x0c\x0d\t")


def line(event: dict[str, Any]) -> str:
    """``09:32:14 credential.issued  agent:pr-reviewer -> github``."""
    parts = [time.strftime("%H:%M:%S", time.localtime(event["ts"])), f"{event['event']:<18}"]
    agent = event.get("agent")
    if isinstance(agent, dict):
        parts.append(str(agent.get("id")))
    if event.get("method"):  # api.call / api.denied: what the agent did upstream
        parts.append(f"{event['method']} {event.get('path', '')} {event.get('status', '')}")
    elif event.get("integration"):
        parts.append(f"-> {event['integration']}")
    if event.get("target") and not event.get("method"):  # an API call's path names it
        parts.append(f"[{event['target']}]")
    if event["event"] == "credential.denied" or (
        event.get("reason") and event["event"] != "credential.issued"
    ):
        parts.append(f"({event.get('reason')})")
    return " ".join(parts)


def plain(text: str) -> bool:
    """True if rich would print ``text`` unchanged (not on a terminal, no markup).

    rich replaces ``:name:`` (no whitespace inside) by an emoji; every such code
    lies between two neighbouring colons, so a line without such a pair is safe.
    The clock's own ``HH:MM:`` pair is consumed first and is never an emoji, so
    the check starts after the clock.
    """
    if not RICH_CHANGES.isdisjoint(text):
        return False
    start = text.find(":", 9)
    while start != -1:
        end = text.find(":", start + 1)
        if end == -1:
            return True
        if not any(char.isspace() for char in text[start + 1 : end]):
            return False
        start = end
    return True


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
    if "agent" in params:
        try:
            params["agent"] = validate.agent_name(params["agent"])
        except validate.InvalidInput as exc:
            raise errors.UsageError(str(exc)) from exc
    ordered: dict[str, str] = {k: params[k] for k in ("agent", "user", "event") if k in params}
    query = urllib.parse.urlencode(ordered)
    return query + "&" if query else ""


def _write(text: str) -> None:
    """Write and flush one line; a closed pipe ends quietly with status 1.

    The typer path does the same: rich's ``Console.on_broken_pipe`` for text,
    click's EPIPE handling for ``--json``.
    """
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


def show(events: list[dict[str, Any]], as_json: bool) -> None:
    """Print events as ``commands.audit.tail`` does (``render.emit_json_line``, or rich)."""
    for event in events:
        if as_json:
            _write(json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n")
            continue
        text = line(event)
        if plain(text):
            _write(text + "\n")
        else:
            from kontext_cli import render  # rare: let rich apply its changes

            render.out.print(text, markup=False)


def run(req: TailRequest) -> int:
    query = _query(req.filters)
    with client.connect(paths.resolve(), autostart=True) as conn:
        answer = conn.call("GET", f"/v1/audit?{query}last={req.lines}")
    show(answer["events"], req.as_json)
    return 0
