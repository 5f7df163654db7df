"""kontext: per-agent, short-lived, process-bound credentials for AI agents.

This package is two things:

- the library agents import (its public names are listed in ``__all__``);
- ``kontext.common``: what the command-line tool (``kontext_cli``) and the
  daemon (``kontextd``) share — the wire format, paths, validation, config and
  the integration catalogue — so the two never disagree about a name, a scope
  or a duration. It is internal: no stability promise.

The arrows run one way: ``kontext_cli -> kontext <- kontextd``. Importing this
package must stay cheap (``kontext exec`` loads ``kontext.common`` on every run),
so public names that need heavier modules are loaded on first use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
