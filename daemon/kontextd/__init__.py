"""kontextd: the local credential daemon.

Subpackages by domain: ``api`` (control socket and loopback HTTP), ``store``
(SQLite, the only place with SQL), ``tokens`` (signing keys, minting,
verification), ``policy`` (the request path's layers), ``audit`` (the hash chain).
"""

from kontext import __version__

__all__ = ["__version__"]
