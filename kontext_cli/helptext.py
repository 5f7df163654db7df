"""``--help`` as a person reads it: plain metavars, whole summaries, examples, ``-h``.

typer's defaults show a value's Python type (``--lines <int range>``,
``--scope <list[str]>``), cut each command's summary to the width left over
("Refuse new credentials and revoke live ones (like 'kontext..."), and leave the
examples to the man pages. ``polish`` walks the click command tree once, after
typer built it, and fixes all three; the man pages and completions are read
from the same polished tree, so ``--help`` and ``man`` say the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

PROG = "kontext"


def polish(root: TyperGroup) -> TyperGroup:
    """Metavars, whole one-line summaries and examples for every command under ``root``."""
    for path, command in _walk(root, ()):
        for param in command.params:
            if isinstance(param, TyperOption | TyperArgument):
                _name_value(param)
        if path:
            command.short_help = _summary(command.help or "")
        if isinstance(command, TyperCommand):
            command.epilog = _examples(path)
    return root


def _walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


def _name_value(param: TyperOption | TyperArgument) -> None:
    """``--max-ttl MAX_TTL`` rather than ``--max-ttl <str>``; ranges said as "1 to 10000"."""
    flag = bool(getattr(param, "is_flag", False)) or bool(getattr(param, "count", False))
    if param.metavar is None and not flag:
        if isinstance(param, TyperArgument):
            param.metavar = (param.name or "value").upper()
        else:
            longs = [o for o in param.opts if o.startswith("--")] or param.opts
            param.metavar = longs[0].lstrip("-").replace("-", "_").upper()
    if isinstance(param, TyperArgument):
        # typer writes "NAME <str>" in the list and "{NAME}" in the usage line.
        shown = str(param.metavar)
        usage = shown if param.required or shown.startswith("[") else f"[{shown}]"
        usage += "..." if param.nargs != 1 and not usage.endswith("...") else ""
        param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        param._usage_display_name = lambda: usage  # type: ignore[method-assign]
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None and high is not None:
        text = f"{low} to {high}"
        # An instance attribute wins over the method: typer's own says "1<=x<=10000".
        param._get_number_range_help_str = lambda: text  # type: ignore[method-assign]


def _summary(text: str) -> str:
    """The help's first line, whole: click would cut it to the width left over."""
    first = text.strip().split("\n\n", 1)[0]
    return " ".join(first.split()).rstrip(".")


def _examples(path: tuple[str, ...]) -> str | None:
    """The man page's EXAMPLES, kept as written (``\\b``: click must not rewrap them)."""
    from kontext_cli.docgen.examples import EXAMPLES

    examples = EXAMPLES.get(path)
    if not examples:
        return None
    lines = ["\b", "Examples:"]
    for text, line in examples:
        if text:
            lines.append(f"  {text}")
        lines.append(f"    $ {line}")
    return "\n".join(lines)
