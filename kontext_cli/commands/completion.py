"""``kontext completion SHELL``: print the shell completion script.

The script is generated from the same CLI definition as ``completions/`` (see
``kontext_cli.gendocs``), so it is byte for byte the committed file and always
matches the installed kontext. Agent names complete live from a running daemon;
scopes and integration names from config.toml (``complete-words``), so custom
integrations complete too — neither starts the daemon.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

HELP = """Print the completion script for SHELL on standard output.

\b
bash:  kontext completion bash > ~/.local/share/bash-completion/completions/kontext
zsh:   kontext completion zsh > ~/.zfunc/_kontext
fish:  kontext completion fish > ~/.config/fish/completions/kontext.fish

For zsh, put fpath=(~/.zfunc $fpath) before compinit in ~/.zshrc. Or load the
script into the current shell only: source <(kontext completion bash).
"""


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


class Words(StrEnum):
    scope = "scope"
    integration = "integration"


def register(app: typer.Typer) -> None:
    app.command("completion", help=HELP, no_args_is_help=True)(completion)
    # What the scripts ask for at TAB time (hidden: not a command for people).
    app.command("complete-words", hidden=True)(complete_words)


def complete_words(
    kind: Annotated[Words, typer.Argument(metavar="KIND", help="scope or integration.")],
) -> None:
    """Print one completion word a line: INTEGRATION:SCOPE or integration names.

    Read from config.toml (the built-ins plus every ``[integrations.NAME]``), so a
    custom integration completes too; never asks, or starts, the daemon. A
    config.toml that does not load leaves the built-ins.
    """
    from kontext.common import config, integrations, paths

    try:
        catalogue = config.load(paths.resolve().config_file).integrations
    except (config.ConfigError, paths.PathsUnusable):
        catalogue = dict(integrations.BUILTINS)
    if kind is Words.integration:
        words = sorted(catalogue)
    else:
        words = sorted(f"{i.name}:{s}" for i in catalogue.values() for s in i.scopes)
    sys.stdout.write("".join(f"{w}\n" for w in words))


def completion(
    shell: Annotated[Shell, typer.Argument(metavar="SHELL", help="The shell to complete in.")],
) -> None:
    from kontext_cli import gendocs

    generators = {
        Shell.bash: gendocs.bash_script,
        Shell.zsh: gendocs.zsh_script,
        Shell.fish: gendocs.fish_script,
    }
    sys.stdout.write(generators[shell](gendocs.load_tree()))
