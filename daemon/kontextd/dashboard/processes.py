"""What process holds a credential: its pid and command line, as the user ran it.

Read from ``/proc/PID/cmdline`` only while the pid still belongs to the process
that was recorded (its start time matches: a pid reused by another program shows
as gone). A command line is the user's own text, yet kontext promises that a page
never shows a token: anything shaped like one (a JWT, a provider's token prefix,
the value after ``Bearer``, ``--token``/``--password``-style options and
``TOKEN=``-style assignments) is replaced by ``[redacted]`` before it leaves the
daemon.
"""

from __future__ import annotations

import re
import shlex

MAX_COMMAND = 400
REDACTED = "[redacted]"

_SECRET_WORDS = r"(?:token|secret|password|passwd|api[-_]?key|auth|credential|bearer)"  # noqa: S105
# A value that looks like a credential on its own.
_SHAPED = re.compile(
    r"eyJ[\w-]{6,}\.[\w-]{6,}\.[\w-]*"  # a JWT (any JOSE compact serialisation)
    r"|\b(?:gh[pousr]_|github_pat_|glpat-|xox[abposr]-|sk-|AKIA|AIza)[\w-]{8,}"  # providers
    # a long opaque run of letters and digits (keys, base64 secrets; a path's '/' ends it)
    r"|\b(?=[\w+-]*\d)(?=[\w+-]*[A-Za-z])[\w+-]{40,}={0,2}"
)
# ``--token=X``, ``TOKEN=X``, ``token: X``: the value after a secret-sounding name.
_ASSIGNED = re.compile(rf"(?i)({_SECRET_WORDS}[\w-]*\s*[=:]\s*)(?!(?:bearer|basic|token)\s)(\S+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)(\s+)([\w.~+/=-]{8,})")
_OPTION = re.compile(rf"(?i)^--?[\w-]*{_SECRET_WORDS}[\w-]*$")


def redact(argv: list[str]) -> list[str]:
    """``argv`` with anything that looks like a secret replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if _OPTION.match(arg):
            hide_next = True  # ``--token VALUE``: the next word is the value
            out.append(arg)
            continue
        text = _ASSIGNED.sub(lambda m: m.group(1) + REDACTED, arg)
        text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        out.append(_SHAPED.sub(REDACTED, text))
    return out


def start_time(pid: int) -> str | None:
    """The process's start time (``/proc/PID/stat`` field 22), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def command_line(pid: int | None, started: str | None) -> str | None:
    """The redacted command line of ``pid`` if it is still the recorded process."""
    if pid is None or (started is not None and start_time(pid) != started):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read(64 * 1024)
    except OSError:
        return None
    argv = [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0") if part]
    if not argv:
        return None
    text = shlex.join(redact(argv))
    return text if len(text) <= MAX_COMMAND else text[: MAX_COMMAND - 1] + "…"
