"""``man ./man/kontext-exec.1`` renders cleanly, and every command has a full page.

The tree comes from the CLI definition, so a command someone adds later gets the
same checks (and, without hand-written examples yet, still an EXAMPLES section).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kontext_cli import errors, gendocs

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"


def man(page: Path) -> subprocess.CompletedProcess[str]:
    program = shutil.which("man")
    if program is None:
        pytest.skip("man is not installed")
    return subprocess.run(
        [program, "--warnings", "-l", str(page)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0", "PAGER": "cat"},
        timeout=60,
    )


def test_man_renders_the_exec_page_cleanly() -> None:
    proc = man(MAN / "kontext-exec.1")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    text = re.sub(".\b", "", proc.stdout)
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert f"\n{section}\n" in text
    assert "kontext exec --agent pr-reviewer -- ./review.sh" in text


def test_every_page_renders_without_a_warning() -> None:
    for page in sorted(MAN.glob("*.1")):
        proc = man(page)
        assert proc.returncode == 0 and proc.stderr == "", f"{page.name}: {proc.stderr}"


def test_every_command_has_a_page_with_examples_and_exit_status() -> None:
    # That the committed files match is test_docs_fresh's job; this checks the content.
    tree = gendocs.load_tree()
    for command in gendocs.leaves(tree):
        page = gendocs.leaf_page(command, tree)
        examples = page.split("\n.SH EXAMPLES\n")[1].split("\n.SH ")[0]
        assert ".EX\n" in examples and "kontext" in examples, f"{command.page}: no example"
        assert "\n.SH EXIT STATUS\n" in page


def test_the_exit_status_tables_list_every_code() -> None:
    root = (MAN / "kontext.1").read_text()
    readme = (ROOT / "README.md").read_text()
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.KontextError):
            code = cls.exit_code
            assert f"\\fB{code}\\fR" in root, f"exit {code} missing from kontext.1"
            assert f"| {code} |" in readme, f"exit {code} missing from the README's table"
