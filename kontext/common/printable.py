"""Text from outside made safe to show on a terminal: every control character escaped.

An audit event can carry text someone else chose — another OS user can put any
bytes into a gateway path or an HTTP method without holding a token — and a
terminal obeys escape sequences in what it is sent: ESC [ 2J clears the screen,
OSC 52 writes the clipboard, C1 0x9b is a one-byte CSI, U+202E reverses the
text that follows. ``printable`` shows every character ``str.isprintable``
rejects, except the plain space, as a visible escape (``\\x1b``, ``\\u202e``):
C0, DEL, C1, bidi controls and every other format character (Cf), line and
paragraph separators, unassigned and private-use code points, lone surrogates.

Standard library only, and one C-level check for text that needs nothing (the
common case): ``kontext audit tail``'s fast path calls it for every line.
"""

from __future__ import annotations

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character (but the space) shown as an escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)
