"""A keyring backend that stands in for a locked or wedged Secret Service.

Selected the documented way, ``PYTHON_KEYRING_BACKEND=hanging_keyring.Hanging``
(with this directory on ``PYTHONPATH``); nothing in kontext knows of it. It keeps
secrets in memory and works normally until the file named by
``KONTEXT_TEST_KEYRING_HANG`` exists — then every call blocks, as a Secret
Service waiting for an unlock prompt nobody answers does.
"""

from __future__ import annotations

import os
import time

from keyring.backend import KeyringBackend


def _maybe_hang() -> None:
    flag = os.environ.get("KONTEXT_TEST_KEYRING_HANG", "")
    while flag and os.path.exists(flag):
        time.sleep(0.1)


class Hanging(KeyringBackend):
    priority = 1  # type: ignore[assignment]  # keyring declares it as a classproperty

    def __init__(self) -> None:
        super().__init__()
        self._secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        _maybe_hang()
        return self._secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        _maybe_hang()
        self._secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        _maybe_hang()
        self._secrets.pop((service, username), None)
