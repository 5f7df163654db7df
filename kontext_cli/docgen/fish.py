"""``completions/kontext.fish``."""

from __future__ import annotations

import shlex

from kontext_cli.docgen.model import (
    AGENT,
    AGENT_OR_CREDENTIAL,
    AGENT_PREFIXED,
    CHOICE,
    COMMAND,
    FILE,
    GENERATED_BY,
    INTEGRATION,
    NOTHING,
    SCOPE,
    Command,
    Param,
    walk,
)
from kontext_cli.docgen.shells import all_integrations, all_scopes, pkey, socket_under_home

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

# Scopes and integrations, from config.toml (custom integrations too); the
# built-ins when kontext cannot say. Never starts kontextd.
function __kontext_words
    set -l prog (commandline -opc)[1]
    set -q prog[1]; or set prog kontext
    set -l run $prog complete-words $argv[1]
    command -q timeout; and set run timeout 3 $run
    $run 2>/dev/null; and return
    switch $argv[1]
        case scope
            printf '%s\n' @SCOPES@
        case integration
            printf '%s\n' @INTEGRATIONS@
    end
end

function __kontext_agent_refs
    echo credential
    __kontext_agent_prefixed
end

function __kontext_agent_prefixed
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
        AGENT_PREFIXED: " -a '(__kontext_agent_prefixed)'",
        SCOPE: " -a '(__kontext_words scope)'",
        CHOICE: " -a " + _fish_quote(" ".join(param.choices)),
        INTEGRATION: " -a '(__kontext_words integration)'",
        FILE: " -F",
    }.get(param.completes, "")


def _fish_option(command: Command, opt: Param) -> str:
    line = (
        f"complete -c kontext -n {_fish_quote('__kontext_at ' + shlex.quote(pkey(command.path)))}"
    )
    for flag in opt.flags:
        line += f" -s {flag[1:]}" if not flag.startswith("--") else f" -l {flag[2:]}"
    if opt.takes_value:
        line += " -r" + ("" if opt.completes == FILE else " -f") + _fish_values(opt)
    return line + f" -d {_fish_quote(opt.help.splitlines()[0] if opt.help else '')}"


def _fish_argument(command: Command, index: int, arg: Param) -> str:
    if arg.completes == COMMAND:
        return "complete -c kontext -n __kontext_in_command -f -a '(__kontext_command_line)'"
    where = shlex.quote(pkey(command.path)) + ("" if arg.variadic else f" {index}")
    return f"complete -c kontext -n {_fish_quote('__kontext_at ' + where)} -f{_fish_values(arg)}"


def _fish_lines(command: Command) -> list[str]:
    at = _fish_quote("__kontext_at " + shlex.quote(pkey(command.path)))
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
    subs = [(pkey(c.path), " ".join(s.path[-1] for s in c.subcommands)) for c in commands]
    valued = [
        (pkey(c.path), " ".join(f for o in c.options if o.takes_value for f in o.flags))
        for c in commands
    ]
    parts = [
        f"# fish completion for kontext: generated by {GENERATED_BY}; do not edit.",
        "# Install: copy to ~/.config/fish/completions/kontext.fish",
        _fish_switch("__kontext_subcommands", subs),
        _fish_switch("__kontext_value_options", valued),
        FISH_HELPERS.replace("@SOCKET@", socket_under_home())
        .replace("@SCOPES@", " ".join(all_scopes()))
        .replace("@INTEGRATIONS@", " ".join(all_integrations()))
        .strip("\n"),
        "",
        "complete -c kontext -f",
        *(line for c in commands for line in _fish_lines(c)),
    ]
    return "\n".join(parts) + "\n"
