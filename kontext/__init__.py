"""kontext: per-agent, short-lived, process-bound credentials for AI agents.

This package is two things:

- the library agents import. Its public API is ``__all__`` below::

      import kontext

      cred = kontext.require("github", scopes=["pulls:read"], target="acme/backend")
      httpx.get(f"{cred.base_url}/repos/acme/backend/pulls/42", headers=cred.headers)

      with kontext.require("github", scopes=["pulls:write"]) as cred:
          ...                                   # revoked when the block ends

      gh = kontext.client("github")             # httpx.Client: a credential per request
      cred = await kontext.arequire("github", token=bearer_token_received)

  Each credential is minted by RFC 8693 token exchange at the local daemon from
  the authority this process holds (``KONTEXT_TOKEN`` under ``kontext exec``, or
  ``token=``), through the same request path as ``kontext exec``: it is audited,
  can only narrow, and dies with its authority. See ``docs/library.md``.

- ``kontext.common``: what the command-line tool (``kontext_cli``) and the
  daemon (``kontextd``) share — the wire format, paths, validation, config and
  the integration catalogue. It is internal: no stability promise.

The arrows run one way: ``kontext_cli -> kontext <- kontextd``. Importing this
package must stay cheap (``kontext exec`` loads ``kontext.common`` on every run),
so the public names are loaded on first use (PEP 562) — httpx only then.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "TTL",
    "Credential",
    "Denied",
    "InvalidRequest",
    "KontextError",
    "NotConnected",
    "Unavailable",
    "__version__",
    "arequire",
    "async_client",
    "client",
    "require",
]

# ``typing`` costs exec ~2 ms to import; type checkers treat any name
# TYPE_CHECKING as true, the interpreter sees False.
TYPE_CHECKING = False
if TYPE_CHECKING:  # what the lazy loader below hands out, for type checkers
    from kontext._clients import async_client, client
    from kontext._credential import Credential
    from kontext._errors import Denied, InvalidRequest, KontextError, NotConnected, Unavailable
    from kontext._exchange import TTL, arequire, require

# public name -> the private module that defines it
_HOME = {
    "require": "_exchange",
    "arequire": "_exchange",
    "TTL": "_exchange",
    "client": "_clients",
    "async_client": "_clients",
    "Credential": "_credential",
    "KontextError": "_errors",
    "Denied": "_errors",
    "NotConnected": "_errors",
    "Unavailable": "_errors",
    "InvalidRequest": "_errors",
}


if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name is an error there

    def __getattr__(name: str) -> object:
        """PEP 562: import a public name's module the first time the name is used."""
        home = _HOME.get(name)
        if home is None:
            raise AttributeError(f"module 'kontext' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"kontext.{home}"), name)
        globals()[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
