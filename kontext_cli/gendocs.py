"""Generate the man pages and shell completions from the one CLI definition.

::

    python -m kontext_cli.gendocs            # rewrite man/ and completions/
    python -m kontext_cli.gendocs --check    # exit 1 and list the files that are stale

Everything here is read from the typer app that ``kontext_cli.app.build()`` returns
(commands, help, options, metavars, defaults), from ``kontext_cli.errors`` (exit
statuses) and from ``kontext_cli.common`` (file names, child environment, the
built-in scope catalogue), so the docs cannot drift from the code. The only
hand-written parts are the prose below: examples per command, the environment
and the overview. Examples are parsed against the CLI at generation time, so an
example that stops working fails the generator (and the freshness test).

Output is deterministic: no dates, no paths of this machine, sorted where the
source has no order of its own.

Layout of this module: the model (``Param``, ``Command``) read from typer; the
hand-written prose; roff rendering; the bash, zsh and fish generators; files
and the command line.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from kontext_cli import __version__, errors
from kontext_cli.common import integrations, paths, wire

PROG = "kontext"
MANUAL = "kontext manual"
SOURCE = f"kontext {__version__}"
GENERATED_BY = "python -m kontext_cli.gendocs"

# What a parameter's value completes to in the shells.
AGENT = "agent"  # a registered agent's name, asked of a running daemon
AGENT_OR_CREDENTIAL = "agent-ref"  # 'agent:NAME' or the word 'credential' (revoke)
SCOPE = "scope"  # INTEGRATION:SCOPE from the built-in catalogue
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
    from kontext_cli.app import build

    root = typer.main.get_command(build())
    return _read_command(root, None, ())


def _read_command(cmd: object, parent: typer.Context | None, path: tuple[str, ...]) -> Command:
    """One command (and, for a group, everything below it), hidden ones left out."""
    if not isinstance(cmd, TyperCommand | TyperGroup):
        raise TypeError(f"unexpected command type {type(cmd).__name__} at {path}")
    ctx = typer.Context(cmd, info_name=path[-1] if path else PROG, parent=parent)
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
        if {"--output", "--file"} & set(param.opts):
            return FILE
    elif path[:1] == ("agent",) and path[1:] != ("create",) and param.name == "name":
        return AGENT
    elif path == ("revoke",) and param.name == "what":
        return AGENT_OR_CREDENTIAL
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


# ---------------------------------------------------------------------------
# Hand-written prose: overview, environment, files, examples
# ---------------------------------------------------------------------------

OVERVIEW = (
    "kontext gives every AI agent, script and CI job its own identity "
    "(agent:NAME) and hands it credentials that are scoped, short-lived, tied to "
    "one process, audited and revocable per agent \\(em instead of one long-lived "
    "secret shared by everything.",
    "The kontext command talks to kontextd, a credential daemon that runs as the "
    "same OS user, over a Unix socket that only this user may use. Any command "
    "that needs the daemon starts it in the background if it is not running, and "
    "says so once on standard error.",
    "Every credential request passes three layers \\(em org policy, user consent "
    "and the agent's own permissions; the credential is issued only if all allow, "
    "and every decision, allow or deny, is written to the audit log.",
)

ENVIRONMENT = (
    (
        "KONTEXT_HOME",
        "Keep everything (config, data, runtime socket, logs) under this one "
        "directory instead of the platform's usual places. Keep it short: the "
        "control socket's path must fit in a Unix socket address (about 100 bytes).",
    ),
    ("NO_COLOR", "When set (to anything), output has no colour."),
    (
        "KONTEXT_DEBUG",
        "When set, errors print a traceback (like --verbose) and kontextd logs at "
        "debug level. Secrets are never logged.",
    ),
)

# What kontext exec hands its child, beyond the integration's own variables.
CHILD_ENVIRONMENT = (
    (wire.ENV_TOKEN, "The credential: an RFC 9068 JWT access token."),
    (
        "GITHUB_TOKEN, GH_TOKEN, ...",
        "The same token under the integration's own variable names.",
    ),
    (wire.ENV_AGENT, "The agent's name; a nested kontext exec is refused unless asked for."),
    (wire.ENV_EXPIRES, "When the credential expires, in seconds since the epoch."),
    (wire.ENV_JTI, "The credential's id, for kontext revoke credential."),
)

# (explanation, command line); lines starting with "kontext " are checked against the CLI.
Example = tuple[str, str]

WALKTHROUGH: tuple[Example, ...] = (
    (
        "Register three agents, each with only the scopes it needs:",
        "kontext agent create pr-reviewer --allow github:pulls:read --allow github:pulls:write",
    ),
    (
        "",
        "kontext agent create issue-triage --allow github:issues:read --allow github:issues:write",
    ),
    ("", "kontext agent create release-notes --allow github:contents:read"),
    (
        "Run a script as agent:pr-reviewer; only that process sees GITHUB_TOKEN, "
        "and the credential dies with it:",
        "kontext exec --agent pr-reviewer -- ./review.sh",
    ),
    (
        "Stop agent:issue-triage now; its live credentials turn inactive at once and "
        "the other agents keep working:",
        "kontext revoke agent:issue-triage",
    ),
    ("Watch issuances, denials and revocations as they happen:", "kontext audit tail -f"),
)

EXAMPLES: dict[tuple[str, ...], tuple[Example, ...]] = {
    ("agent", "create"): (
        (
            "Register an agent that may read pull requests and post reviews:",
            "kontext agent create pr-reviewer --allow github:pulls:read --allow github:pulls:write",
        ),
        (
            "With a display name and at most 15-minute credentials:",
            "kontext agent create release-notes --allow github:contents:read "
            "--display-name 'Release Notes' --max-ttl 15m",
        ),
    ),
    ("agent", "list"): (
        ("Show every agent, its scopes and live credentials:", "kontext agent list"),
        ("Just the names, for a script:", "kontext agent list --json | jq -r '.[].name'"),
    ),
    ("agent", "show"): (
        ("Show one agent:", "kontext agent show pr-reviewer"),
        ("The same as JSON:", "kontext agent show agent:pr-reviewer --json"),
    ),
    ("agent", "delete"): (
        ("Delete an agent you no longer use:", "kontext agent delete release-notes"),
    ),
    ("agent", "disable"): (
        ("Refuse new credentials and revoke live ones:", "kontext agent disable issue-triage"),
    ),
    ("agent", "enable"): (
        ("Undo kontext revoke agent:issue-triage:", "kontext agent enable issue-triage"),
    ),
    ("exec",): (
        (
            "Run a script as agent:pr-reviewer; GITHUB_TOKEN is set for the script only:",
            "kontext exec --agent pr-reviewer -- ./review.sh",
        ),
        (
            "Ask for less than the agent may have: read only, one repository, five minutes:",
            "kontext exec --agent pr-reviewer --scope github:pulls:read "
            "--target acme-corp/backend --ttl 5m -- gh pr list",
        ),
        (
            "A CI step; the step fails with the command's own exit status:",
            "kontext exec -a release-notes -- make release-notes",
        ),
    ),
    ("revoke",): (
        (
            "Stop an agent now: disable it and revoke all its live credentials:",
            "kontext revoke agent:issue-triage",
        ),
        ("Also terminate its running processes:", "kontext revoke agent:issue-triage --kill"),
        (
            "Revoke one credential by the id its process saw in KONTEXT_CREDENTIAL_ID:",
            "kontext revoke credential q2v8mUZ3tJd1G0xGkz1Q4A",
        ),
    ),
    ("audit", "tail"): (
        ("The last 20 events:", "kontext audit tail"),
        ("Follow new events live until interrupted:", "kontext audit tail -f"),
        (
            "One agent's last 100 events, one JSON object per line:",
            "kontext audit tail -n 100 --agent pr-reviewer --json",
        ),
        (
            "Denials in the last two hours:",
            "kontext audit tail --event credential.denied --since 2h",
        ),
    ),
    ("audit", "verify"): (
        ("Check the log's hash chain and signed checkpoints:", "kontext audit verify"),
        ("Check an export someone sent you:", "kontext audit verify --file audit.jsonl"),
    ),
    ("audit", "export"): (
        (
            "Last week's events as JSON lines, for a log shipper:",
            "kontext audit export --since 7d -o audit.jsonl",
        ),
    ),
    ("audit", "prune"): (
        (
            "Drop events older than 90 days; the rest still verifies:",
            "kontext audit prune --before 90d",
        ),
    ),
    ("audit", "checkpoint"): (
        ("Sign a checkpoint over the newest event now:", "kontext audit checkpoint"),
    ),
    ("policy", "schema"): (
        ("The Cedar schema to write policies against:", "kontext policy schema"),
    ),
    ("policy", "check"): (
        ("Which policies are loaded, and are any files broken?", "kontext policy check"),
    ),
    ("policy", "reload"): (("Load edited policy files now:", "kontext policy reload"),),
    ("policy", "explain"): (
        (
            "Would agent:pr-reviewer get write access here, and which policy decides?",
            "kontext policy explain --agent pr-reviewer --scope github:pulls:write "
            "--target acme-corp/backend",
        ),
    ),
    ("daemon", "run"): (
        ("Run kontextd in the foreground, e.g. under a supervisor:", "kontext daemon run"),
    ),
    ("daemon", "start"): (("Start kontextd ahead of the first command:", "kontext daemon start"),),
    ("daemon", "stop"): (("Stop kontextd; live credentials are revoked:", "kontext daemon stop"),),
    ("daemon", "status"): (
        ("Is it running, and how does it keep secrets?", "kontext daemon status"),
        ("The same as JSON:", "kontext daemon status --json"),
    ),
    ("daemon", "install"): (
        ("Start kontextd with your login session (systemd or launchd):", "kontext daemon install"),
        ("See the unit it would write:", "kontext daemon install --print"),
    ),
    ("daemon", "uninstall"): (
        ("Stop starting kontextd with your session:", "kontext daemon uninstall"),
    ),
    ("doctor",): (
        ("Check the set-up; each problem comes with its fix:", "kontext doctor"),
        ("Restart a kontextd left over from before an upgrade:", "kontext doctor --fix"),
        (
            "Only what failed, for a script:",
            "kontext doctor --json | jq '.checks[] | select(.status == \"fail\")'",
        ),
    ),
    ("completion",): (
        (
            "Install bash completion for your user:",
            "kontext completion bash > ~/.local/share/bash-completion/completions/kontext",
        ),
        ("Load zsh completion in this shell only:", "source <(kontext completion zsh)"),
        (
            "Install fish completion:",
            "kontext completion fish > ~/.config/fish/completions/kontext.fish",
        ),
    ),
    ("config", "set"): (
        (
            "Refuse the plaintext-file fallback when no OS keyring works:",
            "kontext config set secrets.fallback refuse",
        ),
    ),
    ("config", "get"): (("Show the current setting:", "kontext config get secrets.fallback"),),
    ("config", "path"): (
        ("Open the config file in your editor:", '"$EDITOR" "$(kontext config path)"'),
    ),
    ("keys", "rotate"): (("Start signing with a new key:", "kontext keys rotate"),),
    ("keys", "list"): (
        ("Print the JWKS that resource servers verify against:", "kontext keys list --json"),
    ),
    ("integration", "list"): (
        (
            "Which integrations are connected, and how agents reach them:",
            "kontext integration list",
        ),
    ),
    ("integration", "connect"): (
        (
            "Store a GitHub token from your password manager (never echoed):",
            "kontext integration connect github --secret-stdin",
        ),
        (
            "Connect with OAuth in a browser on another machine:",
            "kontext integration connect github --no-browser",
        ),
    ),
    ("integration", "disconnect"): (
        ("Forget GitHub's upstream secret:", "kontext integration disconnect github"),
    ),
}


def examples_for(command: Command) -> tuple[Example, ...]:
    """The hand-written examples, or a pointer to ``--help`` for a command that has none yet."""
    if not command.path:
        return WALKTHROUGH
    return EXAMPLES.get(command.path) or (
        ("Show this command's options:", f"{command.name} --help"),
    )


def check_examples(root: Command) -> list[str]:
    """Parse every example that runs kontext; returns one problem per broken example."""
    from kontext_cli.app import build

    app = typer.main.get_command(build())
    problems: list[str] = []
    for command in [root, *leaves(root)]:
        for _, line in examples_for(command):
            if line.startswith(PROG + " "):
                problem = _parse_example(app, line)
                if problem:
                    problems.append(f"{command.page}: {line!r}: {problem}")
    return problems


def _parse_example(app: object, line: str) -> str | None:
    """Parse one example as the CLI would (without running it); None when it parses."""
    words = shlex.split(line)[1:]
    for stop in ("|", "&&", ";", ">"):
        if stop in words:
            words = words[: words.index(stop)]
    if not isinstance(app, TyperGroup):
        return "the CLI's root is not a group"
    cmd: object = app
    name, parent = PROG, None
    while isinstance(cmd, TyperGroup) and words and words[0] in cmd.commands:
        parent = typer.Context(cmd, info_name=name, parent=parent)
        name, words = words[0], words[1:]
        cmd = cmd.commands[name]
    if not isinstance(cmd, TyperCommand):
        return "does not name a command"
    try:
        cmd.make_context(name, words, parent=parent)
    except Exception as exc:  # click's usage errors, and typer's
        if getattr(exc, "exit_code", None) == 0:  # --help, --version: fine
            return None
        return f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
    return None


# ---------------------------------------------------------------------------
# Exit statuses, read from kontext_cli.errors
# ---------------------------------------------------------------------------

# The exec-only statuses, keyed by the constants so their numbers cannot drift.
EXEC_STATUSES = (
    (errors.EXEC_DENIED, "The request path denied the credential; the command did not run."),
    (
        errors.EXEC_FAILED,
        "Any other kontext error before the command ran (bad usage, daemon "
        "unavailable, unknown agent, ...).",
    ),
    (errors.EXEC_NOT_EXECUTABLE, "The command was found but could not be executed."),
    (errors.EXEC_NOT_FOUND, "The command was not found."),
)

_TREE_LINE = re.compile(r"^[\s│├└─]*(?P<cls>[A-Z]\w+)\s+(?P<code>\d+)\s+(?P<text>.+)$")


def exit_statuses() -> list[tuple[int, str]]:
    """``(code, meaning)`` from the hierarchy drawn in ``errors``' docstring.

    Each line is checked against the class it names, so the table and the code
    cannot disagree; success (0) is added in front.
    """
    table = [(0, "success")]
    for line in (errors.__doc__ or "").splitlines():
        match = _TREE_LINE.match(line)
        if not match:
            continue
        cls = getattr(errors, match["cls"], None)
        code = int(match["code"])
        if not (isinstance(cls, type) and issubclass(cls, errors.KontextError)):
            raise ValueError(f"errors' docstring names unknown class {match['cls']}")
        if cls.exit_code != code:
            raise ValueError(
                f"errors' docstring says {cls.__name__} is {code}, code says {cls.exit_code}"
            )
        text = match["text"].strip()
        table.append((code, text.rstrip(".")))
    if len(table) < 2:
        raise ValueError("found no exit statuses in kontext_cli.errors' docstring")
    return sorted(table)


# ---------------------------------------------------------------------------
# roff (man(7)) rendering
# ---------------------------------------------------------------------------


def roff(text: str) -> str:
    """Escape plain text for roff: backslashes, hyphens, non-ASCII, leading dots."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    out = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in out)
    return "\n".join("\\&" + x if x[:1] in (".", "'") else x for x in out.split("\n"))


def roff_prose(text: str) -> str:
    """Roff for hand-written prose, which may use special characters (``\\(em``)."""
    parts = re.split(r"(\\\([a-z]{2})", text)
    return "".join(p if i % 2 else roff(p) for i, p in enumerate(parts))


def _bold(text: str) -> str:
    return f"\\fB{roff(text)}\\fR"


def _italic_words(text: str) -> str:
    """``-- CMD [ARGS]...`` with the placeholders in italics."""
    parts = re.split(r"([A-Za-z][A-Za-z0-9_:]*)", text)
    return "".join(f"\\fI{roff(p)}\\fR" if i % 2 else roff(p) for i, p in enumerate(parts))


_SYNOPSIS_TOKEN = re.compile(r"(?P<flag>--?[a-z][a-z-]*)|(?P<word>[A-Za-z_][A-Za-z0-9_:]*)")


def _synopsis_piece(piece: str) -> str:
    """``[--scope SCOPE]...`` with the option in bold and the placeholder in italics."""
    out, pos = [], 0
    for match in _SYNOPSIS_TOKEN.finditer(piece):
        out.append(roff(piece[pos : match.start()]))
        out.append(_bold(match[0]) if match["flag"] else f"\\fI{roff(match[0])}\\fR")
        pos = match.end()
    out.append(roff(piece[pos:]))
    return "".join(out)


def _shell_lines(line: str, width: int = 76) -> list[str]:
    """Break a long example before its options, with shell line continuations."""
    words = re.findall(r"""(?:'[^']*'|"[^"]*"|\S)+""", line)
    lines = [words[0]] if words else [""]
    for word in words[1:]:
        if word.startswith("-") and len(lines[-1]) + 1 + len(word) > width:
            lines[-1] += " \\"
            lines.append("    " + word)
        else:
            lines[-1] += " " + word
    return lines


def _paragraphs(text: str) -> list[str]:
    """Help text as roff paragraphs.

    A paragraph that click would not rewrap (first line ``\\b``) or that is
    indented stays as typed, in an example block.
    """
    blocks: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = para.splitlines()
        verbatim = lines[:1] == ["\b"] or all(x.startswith((" ", "\t")) for x in lines)
        lines = [x for x in lines if x != "\b"]
        if verbatim and lines:
            body = "\n".join(roff(x.strip()) for x in lines)
            blocks.append(f".PP\n.RS 4\n.EX\n{body}\n.EE\n.RE")
        elif lines:
            blocks.append(".PP\n" + roff(" ".join(x.strip() for x in lines)))
    return blocks


def _header(page: str, summary: str) -> list[str]:
    return [
        f'.\\" {page}(1): generated by {GENERATED_BY}; do not edit.',
        f'.TH "{roff(page.upper())}" "1" "" "{roff(SOURCE)}" "{MANUAL}"',
        ".SH NAME",
        f"{roff(page)} \\- {roff(summary)}",
    ]


def _synopsis_section(command: Command) -> list[str]:
    pieces = " ".join(_synopsis_piece(p) for p in synopsis(command))
    return [".SH SYNOPSIS", ".nh", ".na", f".B {roff(command.name)}", pieces, ".ad", ".hy"]


def _param_help(param: Param) -> str:
    notes = [param.help.rstrip(".") + "." if param.help else ""]
    if param.choices:
        notes.append(f"One of: {', '.join(param.choices)}.")
    if param.low is not None and param.high is not None:
        notes.append(f"From {param.low} to {param.high}.")
    if param.default is not None:
        notes.append(f"Default: {param.default}.")
    if param.repeatable and param.is_option:
        notes.append("May be given more than once.")
    if param.required and param.is_option:
        notes.append("Required.")
    return roff(" ".join(n for n in notes if n))


def _option_item(param: Param) -> list[str]:
    flags = ", ".join(_bold(f) for f in param.flags)
    value = f" \\fI{roff(param.metavar)}\\fR" if param.takes_value else ""
    return [".TP", flags + value, _param_help(param)]


def _argument_item(param: Param) -> list[str]:
    return [".TP", _italic_words(param.metavar), _param_help(param)]


def _options_section(command: Command) -> list[str]:
    lines: list[str] = []
    if command.arguments:
        lines.append(".SH ARGUMENTS")
        for arg in command.arguments:
            lines += _argument_item(arg)
    lines.append(".SH OPTIONS")
    for opt in command.options:
        lines += _option_item(opt)
    return lines


def _table(rows: list[tuple[str, str]]) -> list[str]:
    lines: list[str] = []
    for key, text in rows:
        lines += [".TP", f"\\fB{roff_prose(key)}\\fR", roff_prose(text)]
    return lines


EXEC_PASSTHROUGH = (
    "0\\(en255",
    "The command's own exit status. If a signal killed the command, kontext exec "
    "dies by the same signal.",
)


def _exit_section(command: Command) -> list[str]:
    if command.path != ("exec",):
        return [".SH EXIT STATUS", *_table([(str(code), text) for code, text in exit_statuses()])]
    return [
        ".SH EXIT STATUS",
        ".PP",
        "kontext exec exits as its command did, so its own failures use numbers "
        "that commands rarely do:",
        *_table([EXEC_PASSTHROUGH, *((str(code), text) for code, text in EXEC_STATUSES)]),
    ]


def _examples_section(command: Command) -> list[str]:
    lines = [".SH EXAMPLES"]
    for text, line in examples_for(command):
        if text:
            lines += [".PP", roff(text)]
        lines += [".PP", ".RS 4", ".EX", *map(roff, _shell_lines(line)), ".EE", ".RE"]
    return lines


def _environment_section(command: Command) -> list[str]:
    lines = [".SH ENVIRONMENT", *_table(list(ENVIRONMENT))]
    if command.path == ("exec",):
        lines += [
            ".PP",
            "The command runs with these variables added; inherited credentials of "
            "other integrations are removed, and nothing else changes:",
            *_table(list(CHILD_ENVIRONMENT)),
        ]
    return lines


HOME_MARK = "/KONTEXT_HOME"


@contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for a moment."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _set_env(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set_env(name, value)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def home_paths() -> paths.Paths:
    """``kontext_cli.common.paths`` under a KONTEXT_HOME of ``/KONTEXT_HOME``."""
    with _environment(KONTEXT_HOME=HOME_MARK):
        return paths.resolve()


def _policy_dirs() -> list[str]:
    """The org policy directories, as the daemon's loader names them."""
    from kontextd.policy import loader

    with _environment(**{loader.SYSTEM_DIR_ENV: None}):
        return loader.policy_dirs(home_paths().config)


def _files() -> list[tuple[str, str]]:
    """The files kontext uses, named by the code that uses them."""
    where = home_paths()

    def show(path: str) -> str:
        return path.replace(HOME_MARK, "$KONTEXT_HOME")

    system_dir, user_dir = _policy_dirs()
    return [
        (
            show(where.config_file),
            "Settings (kontext config). User-defined integrations live here too.",
        ),
        (
            show(os.path.join(user_dir, "*.cedar")),
            "Your org policies, in Cedar (see kontext policy schema).",
        ),
        (
            os.path.join(system_dir, "*.cedar"),
            "Org policies for every user of the machine, read first "
            "(KONTEXT_SYSTEM_POLICY_DIR overrides the directory).",
        ),
        (
            show(where.database),
            "The store: agents, credentials and the audit log (SQLite, WAL mode).",
        ),
        (show(where.socket), "The control socket (mode 0600, in a 0700 directory)."),
        (show(where.http_info), "The loopback HTTP port and issuer of the running daemon."),
        (show(where.log_file), "The daemon's log; it never contains a secret."),
    ]


def _files_section() -> list[str]:
    return [
        ".SH FILES",
        ".PP",
        "Without KONTEXT_HOME the same files live in the platform's configuration, "
        "data, runtime and log directories (XDG on Linux).",
        *_table(_files()),
    ]


def _see_also(pages: list[str]) -> list[str]:
    return [".SH SEE ALSO", ",\n".join(f".BR {roff(p)} (1)" for p in pages)]


def leaf_page(command: Command, root: Command) -> str:
    """The man page of one leaf command."""
    lines = _header(command.page, command.summary)
    lines += _synopsis_section(command)
    lines += [".SH DESCRIPTION", *_paragraphs(command.help)]
    lines += _options_section(command)
    if command.path == ("exec",):
        lines += _environment_section(command)
    lines += _exit_section(command)
    lines += _examples_section(command)
    siblings = [
        c.page for c in leaves(root) if c.path[:-1] == command.path[:-1] and c is not command
    ]
    lines += _see_also([PROG, *siblings])
    return "\n".join(lines) + "\n"


def _commands_section(root: Command) -> list[str]:
    lines = [".SH COMMANDS"]
    for command in root.subcommands:
        if command.is_leaf:
            lines += [".TP", f".BR {roff(command.page)} (1)", roff(command.summary + ".")]
            continue
        lines += [".SS " + roff(f"{command.name}: {command.summary}")]
        for leaf in command.subcommands:
            lines += [".TP", f".BR {roff(leaf.page)} (1)", roff(leaf.summary + ".")]
    return lines


def root_page(root: Command) -> str:
    """``kontext.1``: the overview, every command, environment, files and exit statuses."""
    lines = _header(PROG, root.summary.removeprefix(f"{PROG}: "))
    lines += [".SH SYNOPSIS", f".B {PROG}", " ".join(_synopsis_piece(p) for p in synopsis(root))]
    lines += [".SH DESCRIPTION", *(".PP\n" + roff_prose(p) for p in OVERVIEW)]
    lines += [".PP", f"Each command has its own page, e.g. {_bold('kontext-exec')}(1)."]
    lines += [".SH OPTIONS", *(x for opt in root.options for x in _option_item(opt))]
    lines += _commands_section(root)
    lines += _environment_section(root) + _files_section() + _exit_section(root)
    lines += [
        ".PP",
        f"{_bold('kontext exec')} passes its command's status through; "
        f"see {_bold('kontext-exec')}(1).",
    ]
    lines += _examples_section(root) + _see_also([c.page for c in leaves(root)])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Shell completions: shared pieces
# ---------------------------------------------------------------------------


def all_scopes() -> list[str]:
    """Every built-in INTEGRATION:SCOPE, for --allow and --scope."""
    return sorted(f"{i.name}:{s}" for i in integrations.BUILTINS.values() for s in i.scopes)


def socket_under_home() -> str:
    """The control socket's place relative to KONTEXT_HOME (``run/control.sock``)."""
    return os.path.relpath(home_paths().socket, HOME_MARK)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _key(path: tuple[str, ...]) -> str:
    return " ".join(path)


# ---------------------------------------------------------------------------
# bash
# ---------------------------------------------------------------------------

BASH_HELPERS = r"""
# Agent names, asked of a daemon that is already running: completion never
# starts kontextd, so it looks for the control socket first.
_kontext_socket_exists() {
    local uid dir
    if [[ -n ${KONTEXT_HOME-} ]]; then
        [[ -S $KONTEXT_HOME/@SOCKET@ ]]
        return
    fi
    uid=${EUID:-$(id -u)}
    for dir in "${XDG_RUNTIME_DIR-}" "/run/user/$uid" "${TMPDIR:-/tmp}/runtime-$uid" \
        "$HOME/Library/Caches/TemporaryItems"; do
        [[ -n $dir && -S $dir/kontext/control.sock ]] && return 0
    done
    return 1
}

_kontext_agents() {
    _kontext_socket_exists || return 0
    local -a run=("${_kontext_prog:-kontext}" agent list --json)
    command -v timeout >/dev/null 2>&1 && run=(timeout 3 "${run[@]}")
    "${run[@]}" 2>/dev/null | sed -n 's/^ *"name": "\([a-z0-9][a-z0-9-]*\)".*/\1/p'
}

# Offer words matching the current one; trim what bash treats as a word break.
_kontext_reply() {
    local cur=$1 prefix='' IFS=$' \t\n'
    shift
    COMPREPLY=($(compgen -W "$*" -- "$cur"))
    if [[ $cur == *[:=]* && $COMP_WORDBREAKS == *[:=]* ]]; then
        prefix=${cur%"${cur##*[:=]}"}
        COMPREPLY=("${COMPREPLY[@]#"$prefix"}")
    fi
}

_kontext_values() {
    local kind=$1 cur=$2 name
    case $kind in
        agent) _kontext_reply "$cur" "$(_kontext_agents)" ;;
        agent-ref)
            local -a refs=(credential)
            for name in $(_kontext_agents); do refs+=("agent:$name"); done
            _kontext_reply "$cur" "${refs[*]}"
            ;;
        scope) _kontext_reply "$cur" "$_kontext_scopes" ;;
        file) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null ;;
        choice:*) _kontext_reply "$cur" "${kind#choice:}" ;;
        *) COMPREPLY=() ;;
    esac
}

_kontext() {
    local line=${COMP_LINE:0:COMP_POINT} cur='' path='' word expect='' i=1 npos=0 start=-1
    local -a words
    read -r -a words <<<"$line"
    if [[ $line != *[[:space:]] && ${#words[@]} -gt 0 ]]; then
        cur=${words[${#words[@]}-1]}
        unset 'words[${#words[@]}-1]'
    fi
    local _kontext_prog=${words[0]:-kontext}
    # Walk the words before the cursor: subcommands, options (and their values).
    while ((i < ${#words[@]})); do
        word=${words[i]}
        if [[ -n $expect ]]; then
            expect=''
        elif [[ $word == -- ]]; then
            [[ $path == exec ]] && { start=$((i + 1)); break; }
        elif [[ $word == --*=* ]]; then
            :
        elif [[ $word == -* ]]; then
            [[ " $(_kontext_value_options "$path") " == *" $word "* ]] && expect=$word
        elif [[ " $(_kontext_subcommands "$path") " == *" $word "* ]]; then
            path=${path:+$path }$word
            npos=0
        elif [[ $path == exec ]]; then
            start=$i
            break
        else
            npos=$((npos + 1))
        fi
        i=$((i + 1))
    done
    if ((start >= 0)); then  # exec's command: a command first, then its arguments
        if ((start >= ${#words[@]})); then
            COMPREPLY=($(compgen -c -- "$cur"))
        else
            COMPREPLY=($(compgen -f -- "$cur"))
            compopt -o filenames 2>/dev/null
        fi
        return 0
    fi
    if [[ -n $expect ]]; then
        _kontext_values "$(_kontext_option_kind "$path" "$expect")" "$cur"
    elif [[ $cur == --*=* ]]; then
        _kontext_values "$(_kontext_option_kind "$path" "${cur%%=*}")" "${cur#*=}"
    elif [[ $cur == -* ]]; then
        _kontext_reply "$cur" "$(_kontext_options "$path")"
    elif [[ -n $(_kontext_subcommands "$path") ]]; then
        _kontext_reply "$cur" "$(_kontext_subcommands "$path")"
    else
        _kontext_values "$(_kontext_argument_kind "$path" "$npos")" "$cur"
    fi
    return 0
}
"""


def _kind_word(param: Param) -> str:
    return f"choice:{' '.join(param.choices)}" if param.completes == CHOICE else param.completes


def _bash_case(name: str, arms: list[tuple[str, str]], args: str = '"$1"') -> str:
    """A function printing the value for its argument(s); patterns are shell patterns."""
    body = "".join(
        f"        {pattern}) echo {_sh_quote(value)} ;;\n" for pattern, value in arms if value
    )
    return f"{name}() {{\n    case {args} in\n{body}    esac\n}}\n"


def bash_script(root: Command) -> str:
    """``completions/kontext.bash``."""
    commands = list(walk(root))
    subs = [
        (_sh_quote(_key(c.path)), " ".join(s.path[-1] for s in c.subcommands)) for c in commands
    ]
    opts = [
        (_sh_quote(_key(c.path)), " ".join(f for o in c.options for f in o.flags)) for c in commands
    ]
    valued = [
        (_sh_quote(_key(c.path)), " ".join(f for o in c.options if o.takes_value for f in o.flags))
        for c in commands
    ]
    option_kinds = [
        (_sh_quote(f"{_key(c.path)}|{flag}"), _kind_word(o))
        for c in commands
        for o in c.options
        if o.takes_value and o.completes != NOTHING
        for flag in o.flags
    ]
    argument_kinds = [
        (_sh_quote(f"{_key(c.path)}|") + ("*" if a.variadic else str(i)), _kind_word(a))
        for c in commands
        for i, a in enumerate(c.arguments)
        if a.completes not in (NOTHING, COMMAND)
    ]
    parts = [
        f"# bash completion for kontext: generated by {GENERATED_BY}; do not edit.",
        "# Install: copy to ~/.local/share/bash-completion/completions/kontext,",
        "# or source it from ~/.bashrc.",
        f"_kontext_scopes={_sh_quote(' '.join(all_scopes()))}",
        "",
        _bash_case("_kontext_subcommands", subs),
        _bash_case("_kontext_options", opts),
        _bash_case("_kontext_value_options", valued),
        _bash_case("_kontext_option_kind", option_kinds, '"$1|$2"'),
        _bash_case("_kontext_argument_kind", argument_kinds, '"$1|$2"'),
        BASH_HELPERS.replace("@SOCKET@", socket_under_home()).strip("\n"),
        "",
        "complete -F _kontext kontext",
    ]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------
# zsh
# ---------------------------------------------------------------------------

ZSH_HELPERS = r"""
# Agent names, asked of a daemon that is already running: completion never
# starts kontextd, so it looks for the control socket first.
_kontext_socket_exists() {
    local dir
    if [[ -n ${KONTEXT_HOME-} ]]; then
        [[ -S $KONTEXT_HOME/@SOCKET@ ]]
        return
    fi
    for dir in "${XDG_RUNTIME_DIR-}" "/run/user/$EUID" "${TMPDIR:-/tmp}/runtime-$EUID" \
        "$HOME/Library/Caches/TemporaryItems"; do
        [[ -n $dir && -S $dir/kontext/control.sock ]] && return 0
    done
    return 1
}

_kontext_agent_names() {
    _kontext_socket_exists || return 0
    local -a run=(${_kontext_prog:-kontext} agent list --json)
    (( $+commands[timeout] )) && run=(timeout 3 $run)
    $run 2>/dev/null | sed -n 's/^ *"name": "\([a-z0-9][a-z0-9-]*\)".*/\1/p'
}

_kontext_agents() {
    local -a names
    names=(${(f)"$(_kontext_agent_names)"})
    _wanted agents expl 'agent' compadd -a names
}

_kontext_agent_refs() {
    local -a refs
    refs=(credential ${^${(f)"$(_kontext_agent_names)"}/#/agent:})
    _wanted targets expl 'agent:NAME or credential' compadd -a refs
}

_kontext_scopes() {
    local -a scopes
    scopes=(@SCOPES@)
    _wanted scopes expl 'INTEGRATION:SCOPE' compadd -a scopes
}
"""


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_help(text: str) -> str:
    """Text inside an _arguments ``[...]`` description."""
    first = text.split("\n")[0].strip()
    return re.sub(r"([\[\]:\\])", r"\\\1", first)


def _zsh_action(kind: str, param: Param) -> str:
    return {
        AGENT: "_kontext_agents",
        AGENT_OR_CREDENTIAL: "_kontext_agent_refs",
        SCOPE: "_kontext_scopes",
        FILE: "_files",
        CHOICE: "(" + " ".join(param.choices) + ")",
    }.get(kind, " ")


def _zsh_option_specs(opt: Param) -> list[str]:
    exclusive = "" if opt.repeatable or len(opt.flags) < 2 else "(" + " ".join(opt.flags) + ")"
    star = "*" if opt.repeatable else ""
    specs = []
    for flag in opt.flags:
        spec = f"{exclusive}{star}{flag}"
        if opt.takes_value:
            message = re.sub(r"([:\\])", r"\\\1", opt.metavar.lower())
            spec += ("=" if flag.startswith("--") else "") + f"[{_zsh_help(opt.help)}]"
            spec += f":{message}:{_zsh_action(opt.completes, opt)}"
        else:
            spec += f"[{_zsh_help(opt.help)}]"
        specs.append(_zsh_quote(spec))
    return specs


def _zsh_argument_specs(command: Command) -> list[str]:
    specs = []
    for arg in command.arguments:
        if arg.completes == COMMAND:
            specs += [
                _zsh_quote("(-)1:command:_command_names -e"),
                _zsh_quote("*::arguments:_normal"),
            ]
            continue
        message = re.sub(r"([:\\])", r"\\\1", arg.metavar.strip("[]").lower())
        colons = "*:" if arg.variadic else (":" if arg.required else "::")
        specs.append(_zsh_quote(f"{colons}{message}:{_zsh_action(arg.completes, arg)}"))
    return specs


def _zsh_function(command: Command) -> str:
    name = "_kontext" + "".join(f"__{p.replace('-', '_')}" for p in command.path)
    flags = "-C -s -S" if command.path == ("exec",) else "-C"
    specs = [s for o in command.options for s in _zsh_option_specs(o)]
    if command.is_leaf:
        specs += _zsh_argument_specs(command)
        return (
            f"{name}() {{\n    _arguments {flags} \\\n        "
            + " \\\n        ".join(specs)
            + "\n}\n"
        )
    described = " ".join(_zsh_quote(f"{s.path[-1]}:{s.summary}") for s in command.subcommands)
    arms = "".join(
        f"            ({s.path[-1]}) {name}__{s.path[-1].replace('-', '_')} ;;\n"
        for s in command.subcommands
    )
    specs += [_zsh_quote("1: :->command"), _zsh_quote("*:: :->args")]
    remember = "" if command.path else "    local _kontext_prog=${_kontext_prog:-$words[1]}\n"
    return (
        f"{name}() {{\n"
        f"{remember}"
        "    local curcontext=$curcontext state state_descr line\n"
        "    typeset -A opt_args\n"
        f"    _arguments {flags} \\\n        " + " \\\n        ".join(specs) + "\n"
        "    case $state in\n"
        "    (command)\n"
        f"        local -a commands=({described})\n"
        f"        _describe -t commands {_zsh_quote(command.name + ' command')} commands ;;\n"
        "    (args)\n"
        f"        curcontext=${{curcontext%:*:*}}:{command.page}-$words[1]:\n"
        "        case $words[1] in\n"
        f"{arms}"
        "        esac ;;\n"
        "    esac\n"
        "}\n"
    )


def zsh_script(root: Command) -> str:
    """``completions/_kontext``: works from $fpath (autoload) and when sourced."""
    helpers = ZSH_HELPERS.replace("@SOCKET@", socket_under_home())
    helpers = helpers.replace("@SCOPES@", " ".join(all_scopes()))
    parts = [
        "#compdef kontext",
        f"# zsh completion for kontext: generated by {GENERATED_BY}; do not edit.",
        "# Install: put this file in a directory on $fpath (before compinit runs).",
        helpers.rstrip("\n"),
        "",
        *(_zsh_function(c) for c in walk(root)),
        "if [[ $funcstack[1] == _kontext ]]; then",
        '    _kontext "$@"',
        "else",
        "    compdef _kontext kontext",
        "fi",
    ]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------
# fish
# ---------------------------------------------------------------------------

FISH_HELPERS = r"""
# Where the cursor is: prints the command path, the number of positional
# arguments so far, and (for exec) the index of the command being run.
function __kontext_state
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l path
    set -l npos 0
    set -l expect 0
    set -l i 0
    for token in $tokens
        set i (math $i + 1)
        if test $expect = 1
            set expect 0
        else if test "$token" = --
            if test "$path" = exec
                echo exec; echo $npos; echo (math $i + 1); return
            end
        else if string match -q -- '--*=*' $token
        else if string match -q -- '-*' $token
            contains -- $token (__kontext_value_options "$path"); and set expect 1
        else if contains -- $token (__kontext_subcommands "$path")
            set -a path $token
            set npos 0
        else if test "$path" = exec
            echo exec; echo $npos; echo $i; return
        else
            set npos (math $npos + 1)
        end
    end
    echo "$path"; echo $npos; echo
end

# True when the cursor is at PATH (and, if given, positional argument N).
function __kontext_at
    set -l state (__kontext_state)
    test "$state[1]" = "$argv[1]"; or return 1
    test -z "$state[3]"; or return 1
    set -q argv[2]; and test "$argv[2]" != "$state[2]"; and return 1
    return 0
end

function __kontext_in_command
    set -l state (__kontext_state)
    test -n "$state[3]"
end

# The command being run under exec, for that command's own completions.
function __kontext_command_line
    set -l state (__kontext_state)
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l words $tokens[$state[3]..-1]
    if set -q words[1]
        __fish_complete_subcommand --commandline $words (commandline -ct)
    else
        __fish_complete_command
    end
end

# Agent names, asked of a daemon that is already running: completion never
# starts kontextd, so it looks for the control socket first.
function __kontext_socket_exists
    if set -q KONTEXT_HOME; and test -n "$KONTEXT_HOME"
        test -S "$KONTEXT_HOME/@SOCKET@"
        return
    end
    set -l uid (id -u)
    set -l tmp /tmp
    set -q TMPDIR; and set tmp $TMPDIR
    for dir in "$XDG_RUNTIME_DIR" /run/user/$uid $tmp/runtime-$uid \
            $HOME/Library/Caches/TemporaryItems
        test -n "$dir"; and test -S "$dir/kontext/control.sock"; and return 0
    end
    return 1
end

function __kontext_agents
    __kontext_socket_exists; or return 0
    set -l prog (commandline -opc)[1]
    set -q prog[1]; or set prog kontext
    if command -q timeout
        timeout 3 $prog agent list --json 2>/dev/null
    else
        $prog agent list --json 2>/dev/null
    end | string match -rg '^ *"name": "([a-z0-9][a-z0-9-]*)"'
end

function __kontext_agent_refs
    echo credential
    for name in (__kontext_agents)
        echo agent:$name
    end
end
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_switch(name: str, arms: list[tuple[str, str]]) -> str:
    body = "".join(
        f"        case {_fish_quote(key)}\n            printf '%s\\n' {value}\n"
        for key, value in arms
        if value
    )
    return f'function {name}\n    switch "$argv[1]"\n{body}    end\nend\n'


def _fish_values(param: Param) -> str:
    return {
        AGENT: " -a '(__kontext_agents)'",
        AGENT_OR_CREDENTIAL: " -a '(__kontext_agent_refs)'",
        SCOPE: " -a " + _fish_quote(" ".join(all_scopes())),
        CHOICE: " -a " + _fish_quote(" ".join(param.choices)),
        FILE: " -F",
    }.get(param.completes, "")


def _fish_option(command: Command, opt: Param) -> str:
    line = (
        f"complete -c kontext -n {_fish_quote('__kontext_at ' + shlex.quote(_key(command.path)))}"
    )
    for flag in opt.flags:
        line += f" -s {flag[1:]}" if not flag.startswith("--") else f" -l {flag[2:]}"
    if opt.takes_value:
        line += " -r" + ("" if opt.completes == FILE else " -f") + _fish_values(opt)
    return line + f" -d {_fish_quote(opt.help.splitlines()[0] if opt.help else '')}"


def _fish_argument(command: Command, index: int, arg: Param) -> str:
    if arg.completes == COMMAND:
        return "complete -c kontext -n __kontext_in_command -f -a '(__kontext_command_line)'"
    where = shlex.quote(_key(command.path)) + ("" if arg.variadic else f" {index}")
    return f"complete -c kontext -n {_fish_quote('__kontext_at ' + where)} -f{_fish_values(arg)}"


def _fish_lines(command: Command) -> list[str]:
    at = _fish_quote("__kontext_at " + shlex.quote(_key(command.path)))
    lines = [
        f"complete -c kontext -n {at} -f -a {_fish_quote(s.path[-1])} -d {_fish_quote(s.summary)}"
        for s in command.subcommands
    ]
    lines += [_fish_option(command, o) for o in command.options]
    lines += [
        _fish_argument(command, i, a)
        for i, a in enumerate(command.arguments)
        if a.completes != NOTHING
    ]
    return lines


def fish_script(root: Command) -> str:
    """``completions/kontext.fish``."""
    commands = list(walk(root))
    subs = [(_key(c.path), " ".join(s.path[-1] for s in c.subcommands)) for c in commands]
    valued = [
        (_key(c.path), " ".join(f for o in c.options if o.takes_value for f in o.flags))
        for c in commands
    ]
    parts = [
        f"# fish completion for kontext: generated by {GENERATED_BY}; do not edit.",
        "# Install: copy to ~/.config/fish/completions/kontext.fish",
        _fish_switch("__kontext_subcommands", subs),
        _fish_switch("__kontext_value_options", valued),
        FISH_HELPERS.replace("@SOCKET@", socket_under_home()).strip("\n"),
        "",
        "complete -c kontext -f",
        *(line for c in commands for line in _fish_lines(c)),
    ]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------
# Files and the command line
# ---------------------------------------------------------------------------


def render_all(root: Command) -> dict[str, str]:
    """Every generated file, by its path relative to the repository."""
    problems = check_examples(root)
    if problems:
        raise ValueError("broken examples in kontext_cli/gendocs.py:\n  " + "\n  ".join(problems))
    files = {f"man/{PROG}.1": root_page(root)}
    files.update({f"man/{c.page}.1": leaf_page(c, root) for c in leaves(root)})
    generators: dict[str, Callable[[Command], str]] = {
        "completions/kontext.bash": bash_script,
        "completions/_kontext": zsh_script,
        "completions/kontext.fish": fish_script,
    }
    files.update({name: make(root) for name, make in generators.items()})
    return files


def stale_files(out: Path, files: dict[str, str]) -> list[str]:
    """Generated files that differ from what is in ``out``, and stray ones left there."""
    stale = [name for name, text in files.items() if _read(out / name) != text]
    for directory in ("man", "completions"):
        if (out / directory).is_dir():
            stale += [
                f"{directory}/{p.name}"
                for p in sorted((out / directory).iterdir())
                if f"{directory}/{p.name}" not in files
            ]
    return sorted(stale)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def write_files(out: Path, files: dict[str, str]) -> list[str]:
    """Write what changed and remove stray files; returns what was touched."""
    touched = stale_files(out, files)
    for name in touched:
        target = out / name
        if name in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[name], encoding="utf-8")
        else:
            target.unlink()
    return touched


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kontext_cli.gendocs",
        description=__doc__.split("\n")[0] if __doc__ else None,
    )
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    parser.add_argument(
        "--out", type=Path, default=repo_root(), help="where man/ and completions/ go"
    )
    args = parser.parse_args(argv)
    files = render_all(load_tree())
    if args.check:
        stale = stale_files(args.out, files)
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        if stale:
            print(f"run: {GENERATED_BY}", file=sys.stderr)
        return 1 if stale else 0
    for name in write_files(args.out, files):
        print(f"wrote {name}" if name in files else f"removed {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
