"""``kontextd``: run the credential daemon in the foreground.

``kontext daemon start`` (and any command that needs the daemon) runs this in
the background with ``--detach-stderr``. Exit statuses are the CLI's numbers
(``kontext.common.wire.EXIT_*``): 0 stopped cleanly, 1 a bug, 4 already
running, 5 cannot start (an unsafe directory, the database, the port), 6
config.toml invalid, 7 no secret storage may be used, 9 a directory belongs to
another OS user.
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
    parser.add_argument(
        "--new-database",
        action="store_true",
        help="start with a new empty database where this home's is missing "
        "(its audit history is abandoned, and the new log says so)",
    )
    args = parser.parse_args(argv)
    from kontext.common import paths, wire
    from kontextd import server

    try:
        where = paths.resolve()
    except paths.PathsUnusable as exc:  # e.g. a /tmp/runtime-UID another user made first
        print(f"kontextd: {exc}", file=sys.stderr)
        return wire.EXIT_FOREIGN
    return server.run(where, detach_stderr=args.detach_stderr, new_database=args.new_database)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
