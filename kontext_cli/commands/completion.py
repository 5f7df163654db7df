"""``kontext completion SHELL``: print the shell completion script.

The script is generated from the same CLI definition as ``completions/`` (see
``kontext_cli.gendocs``), so it is byte for byte the committed file and always
matches the installed kontext. Agent names complete live from a running daemon.
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


def register(app: typer.Typer) -> None:
    app.command("completion", help=HELP, no_args_is_help=True)(completion)


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
