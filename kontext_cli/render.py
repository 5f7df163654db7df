"""Output: tables and colour on a terminal, plain text or JSON elsewhere.

Colour follows rich's rules (TTY only, ``NO_COLOR`` honoured). Data goes to
stdout; messages and errors go to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from kontext_cli import errors


class _Console(Console):
    """rich's console, but a closed pipe ends with the table's 141, not rich's 1 (a bug's)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise SystemExit(errors.output_closed())


# User data is never markup, nor an emoji code (":a:" in "agent:a: ..." is one).
out = _Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = _Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def emit_json_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value, sort_keys=True, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if not out.is_terminal:
        # Piped or redirected: whole values, one row per line, never cut to a width.
        columns_of = zip(columns, *rows, strict=True)
        widths = [max(len(str(cell)) for cell in column) for column in columns_of]
        for row in (columns, *rows):
            cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
            out.print("  ".join(cells).rstrip())
        return
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*row)
    out.print(grid)


def note(message: str) -> None:
    """A short message for people, on stderr."""
    err.print(message)


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
