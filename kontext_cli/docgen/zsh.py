"""``completions/_kontext``."""

from __future__ import annotations

import re

from kontext_cli.docgen.model import (
    AGENT,
    AGENT_OR_CREDENTIAL,
    AGENT_PREFIXED,
    CHOICE,
    COMMAND,
    FILE,
    GENERATED_BY,
    INTEGRATION,
    SCOPE,
    Command,
    Param,
    walk,
)
from kontext_cli.docgen.shells import all_integrations, all_scopes, socket_under_home

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

_kontext_agent_prefixed() {
    local -a names refs
    names=(${(f)"$(_kontext_agent_names)"})
    refs=(${names/#/agent:})
    _wanted agents expl 'agent:NAME' compadd -a refs
}

# Scopes and integrations, from config.toml (custom integrations too); the
# built-ins when kontext cannot say. Never starts kontextd.
_kontext_words() {
    local -a run=(${_kontext_prog:-kontext} complete-words $1)
    (( $+commands[timeout] )) && run=(timeout 3 $run)
    $run 2>/dev/null
}

_kontext_scopes() {
    local -a scopes
    scopes=(${(f)"$(_kontext_words scope)"})
    (( $#scopes )) || scopes=(@SCOPES@)
    _wanted scopes expl 'INTEGRATION:SCOPE' compadd -a scopes
}

_kontext_integrations() {
    local -a names
    names=(${(f)"$(_kontext_words integration)"})
    (( $#names )) || names=(@INTEGRATIONS@)
    _wanted integrations expl 'integration' compadd -a names
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
        AGENT_PREFIXED: "_kontext_agent_prefixed",
        SCOPE: "_kontext_scopes",
        FILE: "_files",
        CHOICE: "(" + " ".join(param.choices) + ")",
        INTEGRATION: "_kontext_integrations",
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
    helpers = helpers.replace("@INTEGRATIONS@", " ".join(all_integrations()))
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
