"""Every event name the daemon writes is in the catalogue ``audit tail --event`` checks
against (``kontext.common.events``), so a real event is never refused as a typo."""

from __future__ import annotations

import ast
from pathlib import Path

from kontext.common.events import EVENTS

DAEMON = Path(__file__).parent.parent / "daemon" / "kontextd"
# Calls whose argument (after the core/request/row ones) is an event name.
NAMING_CALLS = {"record", "_event", "_ended_event", "_refuse", "record_event"}


def _names_in(tree: ast.AST) -> set[str]:
    """``{"event": "x.y"}`` literals, ``event = "x.y"``, and names given to the helpers."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "event":
                    found |= _constants(value)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "event" for t in node.targets
        ):
            found |= {c for c in _constants(node.value) if "." in c}
        elif isinstance(node, ast.FunctionDef) and node.name in NAMING_CALLS:
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    found |= {c for c in _constants(default) if "." in c}
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in NAMING_CALLS:
                for arg in [*node.args, *(k.value for k in node.keywords if k.arg == "event")]:
                    found |= {c for c in _constants(arg) if "." in c and " " not in c}
    return found


def _constants(node: ast.AST) -> set[str]:
    """String constants in an expression (``"a.b" if x else "c.d"`` gives both)."""
    return {
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_every_event_the_daemon_writes_is_in_the_catalogue() -> None:
    written: set[str] = set()
    for path in DAEMON.rglob("*.py"):
        written |= _names_in(ast.parse(path.read_text(), str(path)))
    assert written, "the scan found no event names at all"
    assert written - set(EVENTS) == set()
    # And the catalogue names nothing the daemon never writes (a stale entry).
    assert set(EVENTS) - written == set()


def test_event_names_are_lowercase_noun_dot_verb() -> None:
    for name in EVENTS:
        noun, dot, verb = name.partition(".")
        assert dot and noun.isalpha() and verb.replace("_", "").isalpha(), name
        assert name == name.lower()
