"""``kontextd``: run the credential daemon in the foreground.

``kontext daemon start`` (and any command that needs the daemon) runs this in
the background with ``--detach-stderr``.
"""

from __future__ import annotations

import argparse
import sys

from kontext import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kontextd",
        description="kontext credential daemon. Paths follow KONTEXT_HOME when set.",
    )
    parser.add_argument("--version", action="version", version=f"kontextd {__version__}")
    parser.add_argument(
        "--detach-stderr",
        action="store_true",
        help="close stderr once ready (used by 'kontext daemon start')",
    )
    args = parser.parse_args(argv)
    from kontext.common import paths
    from kontextd import server

    return server.run(paths.resolve(), detach_stderr=args.detach_stderr)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
