"""The import arrows run one way: ``kontext_cli -> kontext <- kontextd``.

The library (``kontext``) is what agents import and what the CLI and the daemon
share; it must not reach into either. The daemon must never import the CLI. (The
CLI may import the daemon: ``kontext daemon run`` runs it in the foreground and
``kontext audit verify`` reads the database with the daemon's own checker.)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_daemon_never_imports_the_cli() -> None:
    offenders = [
        f for f, names in _imports(ROOT / "daemon" / "kontextd").items() if "kontext_cli" in names
    ]
    assert offenders == []


def test_the_library_imports_neither_the_cli_nor_the_daemon() -> None:
    offenders = [
        f for f, names in _imports(ROOT / "kontext").items() if names & {"kontext_cli", "kontextd"}
    ]
    assert offenders == []
