"""The hand-written parts: overview, environment, examples per command.

Examples are parsed against the CLI at generation time, so one that stops
working fails the generator (and the freshness test). A command without
examples here still gets an EXAMPLES section (its --help).
"""

from __future__ import annotations

import shlex

import typer
from typer.core import TyperCommand, TyperGroup

from kontext.common import wire
from kontext_cli.docgen.examples import examples_for
from kontext_cli.docgen.model import PROG, Command, leaves

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
        "When set, unexpected errors print a traceback (like --verbose) and kontextd "
        "logs at debug level. Secrets are never logged.",
    ),
    (
        "KONTEXT_DAEMON_TIMEOUT",
        "Seconds to wait for kontextd to accept and answer each request (default 30). "
        "A daemon that is stopped or stuck is then one line, exit 5, not a hang; a "
        "command that kontext exec runs is never cut short by it.",
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


def check_examples(root: Command) -> list[str]:
    """Parse every example that runs kontext; returns one problem per broken example."""
    from kontext_cli import app as cli

    app = cli.command()
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
    if "--help" in words:  # valid on every command; parsing it would print the help
        return None
    try:
        cmd.make_context(name, words, parent=parent)
    except Exception as exc:  # click's usage errors, and typer's
        if getattr(exc, "exit_code", None) == 0:  # --help, --version: fine
            return None
        return f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
    return None
