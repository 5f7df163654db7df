"""Helpers every command module uses: reach the daemon, validate typed values."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from kontext.common import paths, validate
from kontext_cli import client, errors

T = TypeVar("T")


@contextmanager
def daemon(autostart: bool = True) -> Iterator[client.Connection]:
    """A connection to kontextd, started in the background if needed."""
    with client.connect(paths.resolve(), autostart=autostart) as conn:
        yield conn


def checked(parse: Callable[[str], T], value: str) -> T:
    """Run a ``validate`` parser, turning its error into a usage error."""
    try:
        return parse(value)
    except validate.InvalidInput as exc:
        raise errors.UsageError(str(exc)) from exc
