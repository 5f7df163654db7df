"""``completions/kontext.bash``."""

from __future__ import annotations

from kontext_cli.docgen.model import (
    CHOICE,
    COMMAND,
    GENERATED_BY,
    NOTHING,
    Command,
    Param,
    walk,
)
from kontext_cli.docgen.shells import (
    all_integrations,
    all_scopes,
    pkey,
    sh_quote,
    socket_under_home,
)

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

# Scopes and integrations, from config.toml (custom integrations too); the
# built-ins when kontext cannot say. Never starts kontextd.
_kontext_words() {
    local -a run=("${_kontext_prog:-kontext}" complete-words "$1")
    command -v timeout >/dev/null 2>&1 && run=(timeout 3 "${run[@]}")
    "${run[@]}" 2>/dev/null || {
        [[ $1 == scope ]] && echo "$_kontext_scopes" || echo "$_kontext_integrations"
    }
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
        agent-prefixed)
            local -a refs=()
            for name in $(_kontext_agents); do refs+=("agent:$name"); done
            _kontext_reply "$cur" "${refs[*]}"
            ;;
        scope) _kontext_reply "$cur" "$(_kontext_words scope)" ;;
        integration) _kontext_reply "$cur" "$(_kontext_words integration)" ;;
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
        f"        {pattern}) echo {sh_quote(value)} ;;\n" for pattern, value in arms if value
    )
    return f"{name}() {{\n    case {args} in\n{body}    esac\n}}\n"


def bash_script(root: Command) -> str:
    """``completions/kontext.bash``."""
    commands = list(walk(root))
    subs = [(sh_quote(pkey(c.path)), " ".join(s.path[-1] for s in c.subcommands)) for c in commands]
    opts = [
        (sh_quote(pkey(c.path)), " ".join(f for o in c.options for f in o.flags)) for c in commands
    ]
    valued = [
        (sh_quote(pkey(c.path)), " ".join(f for o in c.options if o.takes_value for f in o.flags))
        for c in commands
    ]
    option_kinds = [
        (sh_quote(f"{pkey(c.path)}|{flag}"), _kind_word(o))
        for c in commands
        for o in c.options
        if o.takes_value and o.completes != NOTHING
        for flag in o.flags
    ]
    argument_kinds = [
        (sh_quote(f"{pkey(c.path)}|") + ("*" if a.variadic else str(i)), _kind_word(a))
        for c in commands
        for i, a in enumerate(c.arguments)
        if a.completes not in (NOTHING, COMMAND)
    ]
    parts = [
        f"# bash completion for kontext: generated by {GENERATED_BY}; do not edit.",
        "# Install: copy to ~/.local/share/bash-completion/completions/kontext,",
        "# or source it from ~/.bashrc.",
        f"_kontext_scopes={sh_quote(' '.join(all_scopes()))}",
        f"_kontext_integrations={sh_quote(' '.join(all_integrations()))}",
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
