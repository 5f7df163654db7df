"""The ``kontext`` command-line tool.

Shared code (wire format, paths, validation, config) lives in ``kontext.common``,
which the daemon (``kontextd``) imports too; nothing here is imported by the daemon.
"""

from kontext import __version__

__all__ = ["__version__"]
