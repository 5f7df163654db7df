"""The command tree as plain data, read from the typer definition.

Also what a parameter completes to, and a fictional KONTEXT_HOME so that
generated files never name a path of this machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from kontext.common import paths
from kontext_cli import __version__

PROG = "kontext"
MANUAL = "kontext manual"
SOURCE = f"kontext {__version__}"
GENERATED_BY = "python -m kontext_cli.gendocs"

# What a parameter's value completes to in the shells.
AGENT = "agent"  # a registered agent's name, asked of a running daemon
AGENT_OR_CREDENTIAL = "agent-ref"  # 'agent:NAME' or the word 'credential' (revoke)
AGENT_PREFIXED = "agent-prefixed"  # 'agent:NAME' (an argument with that metavar)
SCOPE = "scope"  # INTEGRATION:SCOPE from the built-in catalogue
INTEGRATION = "integration"  # a built-in integration's name (integration connect NAME)
COMMAND = "command"  # a command line to run (exec)
FILE = "file"
CHOICE = "choice"
NOTHING = "nothing"


# ---------------------------------------------------------------------------
# The model: the command tree as plain data, read from typer
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One option or argument, as the docs and the shells need it."""

    is_option: bool
    name: str
    flags: tuple[str, ...]  # ("-a", "--agent") for options; () for arguments
    metavar: str  # AGENT, "-- CMD [ARGS]..."; "" for flags
    help: str
    default: str | None  # shown as "Default: ..." when set
    required: bool
    repeatable: bool
    completes: str  # one of the kinds above
    choices: tuple[str, ...] = ()
    low: int | float | None = None
    high: int | float | None = None

    @property
    def takes_value(self) -> bool:
        return self.is_option and bool(self.metavar)

    @property
    def long_flag(self) -> str:
        longs = [f for f in self.flags if f.startswith("--")]
        return longs[0] if longs else self.flags[0]

    @property
    def variadic(self) -> bool:
        return not self.is_option and self.repeatable


@dataclass(frozen=True)
class Command:
    """A group (has subcommands) or a leaf command, with its full path."""

    path: tuple[str, ...]  # () for kontext itself, ("agent", "create"), ...
    summary: str
    help: str
    params: tuple[Param, ...]
    subcommands: tuple[Command, ...] = field(default=())

    @property
    def name(self) -> str:
        """``kontext agent create``."""
        return " ".join((PROG, *self.path))

    @property
    def page(self) -> str:
        """``kontext-agent-create``: the man page's name."""
        return "-".join((PROG, *self.path))

    @property
    def is_leaf(self) -> bool:
        return not self.subcommands

    @property
    def options(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.is_option)

    @property
    def arguments(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if not p.is_option)


def load_tree() -> Command:
    """Read the whole command tree from the typer definition."""
    from kontext_cli.app import command

    root = command()
    return _read_command(root, None, ())


def _read_command(cmd: object, parent: typer.Context | None, path: tuple[str, ...]) -> Command:
    """One command (and, for a group, everything below it), hidden ones left out."""
    if not isinstance(cmd, TyperCommand | TyperGroup):
        raise TypeError(f"unexpected command type {type(cmd).__name__} at {path}")
    # The command's context settings (the root's -h/--help) reach its children as at run time.
    settings = dict(getattr(cmd, "context_settings", None) or {})
    ctx = typer.Context(cmd, info_name=path[-1] if path else PROG, parent=parent, **settings)
    subcommands: list[Command] = []
    if isinstance(cmd, TyperGroup):
        for name, sub in cmd.commands.items():
            if not getattr(sub, "hidden", False):
                subcommands.append(_read_command(sub, ctx, (*path, name)))
    params = tuple(
        _read_param(p, path)
        for p in cmd.get_params(ctx)
        if isinstance(p, TyperOption | TyperArgument) and not getattr(p, "hidden", False)
    )
    return Command(
        path=path,
        summary=cmd.get_short_help_str(limit=300).rstrip("."),
        help=_clean(cmd.help or ""),
        params=params,
        subcommands=tuple(subcommands),
    )


def _read_param(param: TyperOption | TyperArgument, path: tuple[str, ...]) -> Param:
    """One option or argument, with what the docs show and what the shells complete."""
    is_option = isinstance(param, TyperOption)
    flag = bool(getattr(param, "is_flag", False)) or bool(getattr(param, "count", False))
    repeatable = bool(param.multiple) or param.nargs == -1
    choices = _choices(param)
    return Param(
        is_option=is_option,
        name=param.name or "",
        flags=tuple(sorted(param.opts + param.secondary_opts, key=_flag_order)),
        metavar="" if is_option and flag else _metavar(param),
        help=_clean(getattr(param, "help", None) or ""),
        default=None if flag else _default(param.default),
        required=bool(param.required),
        repeatable=repeatable,
        completes=_completion_kind(path, param, choices),
        choices=choices,
        low=getattr(param, "min", None),
        high=getattr(param, "max", None),
    )


def _flag_order(flag: str) -> tuple[bool, str]:
    """Short flags first (``-a, --agent``), as in ``--help``."""
    return (flag.startswith("--"), flag)


def _metavar(param: TyperOption | TyperArgument) -> str:
    """The metavar the definition gives, else NAME for arguments and --max-ttl MAX_TTL."""
    if param.metavar:
        return str(param.metavar)
    if isinstance(param, TyperArgument):
        return (param.name or "value").upper()
    longs = [o for o in param.opts if o.startswith("--")] or param.opts
    return longs[0].lstrip("-").replace("-", "_").upper()


def _default(value: object) -> str | None:
    if value is None or value == [] or value == () or callable(value):
        return None
    return str(value)


def _choices(param: TyperOption | TyperArgument) -> tuple[str, ...]:
    descriptor = getattr(param, "type_descriptor", None)
    click_type = getattr(param, "type", None)  # typer built on upstream click
    found = getattr(descriptor, "choices", None) or getattr(click_type, "choices", None) or ()
    return tuple(str(getattr(c, "value", c)) for c in found)


def _completion_kind(
    path: tuple[str, ...], param: TyperOption | TyperArgument, choices: tuple[str, ...]
) -> str:
    """What a value of this parameter completes to (see the kinds at the top)."""
    if choices:
        return CHOICE
    if isinstance(param, TyperOption):
        if "--agent" in param.opts:
            return AGENT
        if {"--allow", "--scope"} & set(param.opts):
            return SCOPE
        if {"--output", "--file", "--token-file", "--checkout"} & set(param.opts):
            return FILE
    elif path[:1] == ("agent",) and path[1:] != ("create",) and param.name == "name":
        return AGENT
    elif path == ("revoke",) and param.name == "what":
        return AGENT_OR_CREDENTIAL
    elif param.metavar == "agent:NAME":
        return AGENT_PREFIXED
    elif path[:1] == ("integration",) and param.name == "name":
        return INTEGRATION
    elif path == ("exec",) and param.nargs == -1:
        return COMMAND
    descriptor = getattr(param, "type_descriptor", None)
    if getattr(descriptor, "is_path", False):
        return FILE
    return NOTHING


def _clean(text: str) -> str:
    """Help text as typer keeps it (already dedented), without trailing space."""
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def walk(command: Command) -> Iterator[Command]:
    """The command and everything below it, depth first, in definition order."""
    yield command
    for sub in command.subcommands:
        yield from walk(sub)


def leaves(root: Command) -> list[Command]:
    return [c for c in walk(root) if c.is_leaf and c.path]


def synopsis(command: Command) -> list[str]:
    """Usage pieces in plain text: ``--agent AGENT``, ``[--scope SCOPE]...``, ``NAME``."""
    pieces: list[str] = []
    for opt in command.options:
        if opt.long_flag == "--help":
            continue
        text = f"{opt.long_flag} {opt.metavar}" if opt.takes_value else opt.long_flag
        text = text if opt.required else f"[{text}]"
        pieces.append(text + ("..." if opt.repeatable else ""))
    if command.subcommands:
        pieces.append("COMMAND [ARGS]...")
    for arg in command.arguments:
        text = arg.metavar if arg.required or arg.metavar.startswith("[") else f"[{arg.metavar}]"
        pieces.append(text + ("..." if arg.variadic and not text.endswith("...") else ""))
    return pieces


HOME_MARK = "/KONTEXT_HOME"


@contextmanager
def temporary_environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for a moment."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            set_env(name, value)
        yield
    finally:
        for name, value in saved.items():
            set_env(name, value)


def set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def home_paths() -> paths.Paths:
    """``kontext.common.paths`` under a KONTEXT_HOME of ``/KONTEXT_HOME``."""
    with temporary_environment(KONTEXT_HOME=HOME_MARK):
        return paths.resolve()
