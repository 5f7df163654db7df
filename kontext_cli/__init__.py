"""kontext: per-agent, short-lived, process-bound credentials.

The package is the command-line tool. ``kontext_cli.common`` holds the wire,
path and validation code that the daemon (``kontextd``) imports too, so the
two can never disagree about a name, a scope or a duration.
"""

__version__ = "0.1.0"
