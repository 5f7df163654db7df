"""Which skipped tests lacked a system package, and the one command that installs them.

pytest's ``-ra`` summary lists every skip with its reason; a newcomer on a fresh
machine then has to read a dozen lines to learn what to install. ``summary``
turns the skips whose reason names a missing program or Debian package into one
line at the end of the run::

    5 tests skipped for lack of system packages (chromium: 3, faketime: 2); install them
    with: sudo apt-get install chromium faketime

The reasons are the tests' own words; ``PACKAGES`` maps each to the Debian
package that provides it (the same list ``.ci/run`` installs).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable

# (pattern found in a skip reason, the Debian package that cures it)
PACKAGES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.IGNORECASE), package)
    for p, package in (
        (r"\bchromium\b", "chromium"),
        (r"\bzsh is not installed", "zsh"),
        (r"\bfish is not installed", "fish"),
        (r"libfaketime|\bfaketime\b", "faketime"),
        (r"gnome-keyring|dbus-run-session|\bdbus\b", "gnome-keyring dbus"),
        (r"\bman is not installed", "man-db"),
        (r"\bgroff\b", "groff-base"),
        (r"systemd-analyze", "systemd"),
        (r"\bnode\b|\bnpm\b", "nodejs"),
        (r"\bsetpriv\b", "util-linux"),
        (r"\bwrk\b", "wrk"),
        (r"\bgit is not installed", "git"),
    )
]


def package_for(reason: str) -> str | None:
    """The Debian package(s) a skip ``reason`` says are missing, or None."""
    for pattern, package in PACKAGES:
        if pattern.search(reason) and ("install" in reason or "need" in reason):
            return package
    return None


def summary(reasons: Iterable[str]) -> list[str]:
    """The line to print for these skip reasons (none if no package was missing)."""
    counts: collections.Counter[str] = collections.Counter()
    for reason in reasons:
        package = package_for(reason)
        if package is not None:
            counts[package] += 1
    if not counts:
        return []
    listed = ", ".join(f"{pkg}: {n}" for pkg, n in sorted(counts.items()))
    packages = " ".join(sorted({p for pkg in counts for p in pkg.split()}))
    total = sum(counts.values())
    npm = (
        " && (cd tests/oidc && npm ci) && (cd tests/dashboard && npm ci)"
        if "nodejs" in counts
        else ""
    )
    return [
        f"{total} test{'s' if total != 1 else ''} skipped for lack of system packages "
        f"({listed}); install them with: sudo apt-get install {packages}{npm}"
    ]
