"""Syntax of the things users type: agent names, scopes, targets, durations.

Each parser returns the clean value or raises ``InvalidInput`` with one line that
says what is wrong and what to do. The CLI and the daemon both call these, so a
value is judged the same way on both sides of the socket.
"""

from __future__ import annotations

# Patterns are written with str operations, not ``re``: this module is on the
# ``kontext exec`` fast path and importing ``re`` costs ~2.5 ms per exec.
LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
DIGITS = frozenset("0123456789")
ALNUM = LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ") | DIGITS


class Word:
    """A name: one character from ``first``, then up to ``max_len - 1`` from ``rest``."""

    def __init__(self, first: frozenset[str], rest: frozenset[str], max_len: int) -> None:
        self.first, self.rest, self.max_len = first, rest, max_len

    def fullmatch(self, value: str) -> bool:
        return (
            0 < len(value) <= self.max_len
            and value[0] in self.first
            and set(value[1:]) <= self.rest
        )


class Joined:
    """1 to ``max_parts`` words joined by ``sep``."""

    def __init__(self, word: Word, sep: str, max_parts: int) -> None:
        self.word, self.sep, self.max_parts = word, sep, max_parts

    def fullmatch(self, value: str) -> bool:
        parts = value.split(self.sep)
        return len(parts) <= self.max_parts and all(self.word.fullmatch(p) for p in parts)


AGENT_NAME = Word(LOWER | DIGITS, LOWER | DIGITS | {"-"}, 63)  # ^[a-z0-9][a-z0-9-]{0,62}$
INTEGRATION_NAME = Word(LOWER, LOWER | DIGITS | {"-"}, 32)  # ^[a-z][a-z0-9-]{0,31}$
SCOPE_NAME = Joined(Word(LOWER, LOWER | DIGITS | {"_", "-"}, 32), ":", 4)  # pulls:read
TARGET_SEGMENT = Word(ALNUM | {"_"}, ALNUM | {".", "_", "-"}, 100)
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_DIGITS = 6

MAX_TARGET_LENGTH = 256
MIN_TTL = 10
MAX_TTL = 24 * 3600


class InvalidInput(ValueError):
    """A value typed by a user (or sent over the wire) is malformed."""


def _shown(value: str) -> str:
    """Quote a bad value for an error message without echoing megabytes or control bytes."""
    text = value if len(value) <= 80 else value[:77] + "..."
    return repr(text)


def agent_name(value: str) -> str:
    """Validate an agent name; accepts ``NAME`` or ``agent:NAME``."""
    name = value[len("agent:") :] if value.startswith("agent:") else value
    if not AGENT_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid agent name {_shown(value)}: use 1-63 lowercase letters, digits and "
            "dashes, starting with a letter or digit (e.g. pr-reviewer)"
        )
    return name


def scope(value: str) -> tuple[str, str]:
    """Split ``INTEGRATION:SCOPE`` (e.g. ``github:pulls:read``) into its two parts."""
    integration, sep, rest = value.partition(":")
    if not sep or not INTEGRATION_NAME.fullmatch(integration) or not SCOPE_NAME.fullmatch(rest):
        raise InvalidInput(
            f"invalid scope {_shown(value)}: write INTEGRATION:SCOPE, e.g. github:pulls:read"
        )
    return integration, rest


def target(value: str) -> str:
    """Validate a target such as ``acme-corp/backend`` (RFC 8707 resource style)."""
    segments = value.split("/")
    if len(value) > MAX_TARGET_LENGTH or not all(TARGET_SEGMENT.fullmatch(s) for s in segments):
        raise InvalidInput(
            f"invalid target {_shown(value)}: use slash-separated names of letters, digits, "
            "'.', '_' and '-', e.g. acme-corp/backend"
        )
    return value


def _duration_parts(value: str) -> list[tuple[int, str]] | None:
    """``1h30m`` -> [(1, "h"), (30, "m")]; None unless the whole value is number-unit pairs."""
    parts: list[tuple[int, str]] = []
    digits = ""
    for char in value:
        if char in DIGITS and len(digits) < MAX_DURATION_DIGITS:
            digits += char
        elif char in UNIT_SECONDS and digits:
            parts.append((int(digits), char))
            digits = ""
        else:
            return None
    return parts if parts and not digits else None


def duration(value: str, *, lower: int = MIN_TTL, upper: int = MAX_TTL) -> int:
    """Parse ``90s``, ``10m``, ``1h30m`` or ``1d`` into seconds within [lower, upper]."""
    parts = _duration_parts(value)
    if parts is None:
        raise InvalidInput(
            f"invalid duration {_shown(value)}: use a number with a unit, e.g. 90s, 10m, 1h30m"
        )
    seconds = sum(count * UNIT_SECONDS[unit] for count, unit in parts)
    if not lower <= seconds <= upper:
        raise InvalidInput(
            f"duration {value} is out of range: use between {format_duration(lower)} "
            f"and {format_duration(upper)}"
        )
    return seconds


def format_duration(seconds: int) -> str:
    """Render seconds the way users type them: ``600`` → ``10m``, ``5400`` → ``1h30m``."""
    if seconds <= 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, UNIT_SECONDS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
