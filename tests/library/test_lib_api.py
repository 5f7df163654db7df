"""The library's surface: one list of public names, each documented, loaded only when used.

``kontext exec`` imports ``kontext.common`` on every run, so ``import kontext``
must stay as lean as it was: the public API is loaded on first use (PEP 562),
and ``require`` itself needs no httpx.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import kontext

API = {
    "require",
    "arequire",
    "client",
    "async_client",
    "Credential",
    "KontextError",
    "Denied",
    "NotConnected",
    "Unavailable",
    "InvalidRequest",
    "TTL",
    "__version__",
}


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(proc.stdout.split())


def test_the_public_api_is_listed_once_in_all() -> None:
    assert set(kontext.__all__) == API
    assert all(hasattr(kontext, name) for name in kontext.__all__)
    assert set(dir(kontext)) >= API


def test_every_public_name_has_a_docstring() -> None:
    for name in sorted(API - {"TTL", "__version__"}):
        obj = getattr(kontext, name)
        assert inspect.getdoc(obj), name
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if not member.startswith("_") and (callable(value) or isinstance(value, property)):
                    assert inspect.getdoc(value), f"{name}.{member}"
    assert inspect.getdoc(kontext)


def test_importing_kontext_or_its_shared_code_loads_no_http_client() -> None:
    for code in ("import kontext", "import kontext.common.wire"):
        loaded = modules_after(code)
        assert not {m for m in loaded if m.split(".")[0] in ("httpx", "httpcore", "h11")}, code
        assert "http.client" not in loaded, code
        assert not {m for m in loaded if m.startswith("kontext._")}, code


def test_require_needs_no_httpx_and_the_clients_load_it_on_use() -> None:
    loaded = modules_after("import kontext; kontext.require; kontext.Credential")
    assert "httpx" not in loaded and "http.client" in loaded
    assert "httpx" in modules_after("import kontext; kontext.client")


def test_a_misspelt_name_is_an_attribute_error() -> None:
    assert not hasattr(kontext, "requires")
    try:
        getattr(kontext, "requires")  # noqa: B009 - the lookup is what is tested
    except AttributeError as exc:
        assert str(exc) == "module 'kontext' has no attribute 'requires'"
