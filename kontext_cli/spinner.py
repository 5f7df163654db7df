"""A spinner on stderr for long waits (starting kontextd), only on a terminal.

Standard library only: it runs on ``kontext exec``'s path when the daemon has
to be started. Piped or redirected stderr, and ``TERM=dumb``, get nothing.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # not typing's: importing typing costs exec ~2 ms
if TYPE_CHECKING:
    from typing import TextIO

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ASCII_FRAMES = "|/-\\"
DELAY = 0.3  # quick waits show nothing at all
INTERVAL = 0.1


class Spinner:
    """Call ``tick()`` while waiting and ``clear()`` when done."""

    def __init__(self, message: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.message = message
        self.started = time.monotonic()
        self.shown = False
        self.frame = 0
        self.enabled = _is_terminal(self.stream) and os.environ.get("TERM") != "dumb"
        encoding = getattr(self.stream, "encoding", None) or "ascii"
        try:
            FRAMES.encode(encoding)
            self.frames = FRAMES
        except (UnicodeEncodeError, LookupError):
            self.frames = ASCII_FRAMES

    def tick(self) -> None:
        if not self.enabled or time.monotonic() - self.started < DELAY:
            return
        symbol = self.frames[self.frame % len(self.frames)]
        self.frame += 1
        self._write(f"\r{symbol} {self.message}")
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self._write("\r\x1b[K")
            self.shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):
        return False
