"""SECURITY.md's promises point at tests: every reference must name a real test.

References are ``tests/FILE.py::test_name`` or, right after one in the same table
cell, ``::test_name`` in that same file; a bare ``tests/FILE.py`` names a whole file.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
REFERENCE = re.compile(r"`((?:tests/[\w/]+\.py)?)(?:::(\w+))?`")


def _references() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for line in (ROOT / "SECURITY.md").read_text().splitlines():
        current = ""
        for path, name in REFERENCE.findall(line):
            if path:
                current = path
            elif not name or not current:
                continue
            found.append((current, name or None))
    return found


def test_every_test_security_md_names_exists() -> None:
    references = _references()
    assert len(references) > 80
    missing = []
    for path, name in references:
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
        elif name and not re.search(rf"^def {name}\(", source.read_text(), re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert missing == []
