"""Generate the man pages and shell completions from the one CLI definition.

::

    python -m kontext_cli.gendocs            # rewrite man/ and completions/
    python -m kontext_cli.gendocs --check    # exit 1 and list the files that are stale

Everything here is read from the typer app that ``kontext_cli.app.build()`` returns
(commands, help, options, metavars, defaults), from ``kontext_cli.errors`` (exit
statuses) and from ``kontext.common`` (file names, child environment, the
built-in scope catalogue), so the docs cannot drift from the code. The only
hand-written parts are examples per command, the environment and the
overview. Examples are parsed against the CLI at generation time, so an
example that stops working fails the generator (and the freshness test).

Output is deterministic: no dates, no paths of this machine, sorted where the
source has no order of its own.

The pieces live in ``kontext_cli.docgen``: ``model`` (``Param``, ``Command``,
read from typer), ``prose`` and ``examples`` (the hand-written parts: add a new
command's examples to ``examples.EXAMPLES``), ``exits``, ``man`` (roff), and
``bash``, ``zsh``, ``fish``. This module writes the files and is the command
line; its names are the API the tests and ``kontext completion`` use.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from kontext_cli.docgen.bash import bash_script
from kontext_cli.docgen.examples import EXAMPLES, WALKTHROUGH, examples_for
from kontext_cli.docgen.exits import exit_statuses
from kontext_cli.docgen.fish import fish_script
from kontext_cli.docgen.man import leaf_page, root_page
from kontext_cli.docgen.model import (
    AGENT,
    AGENT_OR_CREDENTIAL,
    AGENT_PREFIXED,
    CHOICE,
    COMMAND,
    FILE,
    GENERATED_BY,
    NOTHING,
    PROG,
    SCOPE,
    Command,
    Param,
    leaves,
    load_tree,
    synopsis,
    walk,
)
from kontext_cli.docgen.prose import check_examples
from kontext_cli.docgen.shells import all_scopes
from kontext_cli.docgen.zsh import zsh_script

__all__ = [
    "AGENT",
    "AGENT_OR_CREDENTIAL",
    "AGENT_PREFIXED",
    "CHOICE",
    "COMMAND",
    "EXAMPLES",
    "FILE",
    "GENERATED_BY",
    "NOTHING",
    "PROG",
    "SCOPE",
    "WALKTHROUGH",
    "Command",
    "Param",
    "all_scopes",
    "bash_script",
    "check_examples",
    "examples_for",
    "exit_statuses",
    "fish_script",
    "leaf_page",
    "leaves",
    "load_tree",
    "main",
    "render_all",
    "root_page",
    "stale_files",
    "synopsis",
    "walk",
    "write_files",
    "zsh_script",
]


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
