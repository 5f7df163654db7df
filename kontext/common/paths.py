"""Where kontext keeps things.

``KONTEXT_HOME`` points every path (config, data, runtime, logs) at one
directory; tests and isolated set-ups use it. Without it, the platform's usual
places come from platformdirs. platformdirs is imported only in that case, so
``kontext exec`` under ``KONTEXT_HOME`` pays nothing for it.
"""

from __future__ import annotations

import os

SOCKET_NAME = "control.sock"
HTTP_INFO_NAME = "http.json"
LOCK_NAME = "kontextd.lock"
# sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS (incl. the NUL).
MAX_SOCKET_PATH = 103


class PathsUnusable(Exception):
    """The platform's directories cannot be used (e.g. a runtime dir another user
    created first); the message is one line saying what to do."""


class Paths:
    """The four directories kontext uses, and the files inside them.

    A plain class rather than a dataclass: this module is on exec's fast path.
    """

    __slots__ = ("config", "data", "logs", "runtime")

    def __init__(self, config: str, data: str, runtime: str, logs: str) -> None:
        self.config = config
        self.data = data
        self.runtime = runtime
        self.logs = logs

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__
        )

    def __hash__(self) -> int:
        return hash((self.config, self.data, self.runtime, self.logs))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"Paths({shown})"

    @property
    def config_file(self) -> str:
        return os.path.join(self.config, "config.toml")

    @property
    def socket(self) -> str:
        return os.path.join(self.runtime, SOCKET_NAME)

    @property
    def http_info(self) -> str:
        return os.path.join(self.runtime, HTTP_INFO_NAME)

    @property
    def lock(self) -> str:
        return os.path.join(self.runtime, LOCK_NAME)

    @property
    def database(self) -> str:
        return os.path.join(self.data, "kontext.db")

    @property
    def secrets(self) -> str:
        return os.path.join(self.data, "secrets")

    @property
    def log_file(self) -> str:
        return os.path.join(self.logs, "kontextd.log")


def resolve() -> Paths:
    """Return the paths for this process, honouring ``KONTEXT_HOME``."""
    home = os.environ.get("KONTEXT_HOME")
    if home:
        home = os.path.abspath(home)
        return Paths(
            config=os.path.join(home, "config"),
            data=os.path.join(home, "data"),
            runtime=os.path.join(home, "run"),
            logs=os.path.join(home, "log"),
        )
    import platformdirs  # only needed without KONTEXT_HOME

    return Paths(
        config=platformdirs.user_config_dir("kontext"),
        data=platformdirs.user_data_dir("kontext"),
        runtime=_runtime_dir(platformdirs),
        logs=platformdirs.user_log_dir("kontext"),
    )


def _runtime_dir(platformdirs: object) -> str:
    """``$XDG_RUNTIME_DIR/kontext``, or platformdirs' fallback (``/tmp/runtime-UID``).

    Without ``XDG_RUNTIME_DIR`` platformdirs warns on stderr (not one line of
    ours) and refuses a ``/tmp/runtime-UID`` that another user made first (they
    could serve a socket in it): that refusal becomes ``PathsUnusable``.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return str(platformdirs.user_runtime_dir("kontext"))  # type: ignore[attr-defined]
        except OSError as exc:
            raise PathsUnusable(
                f"cannot use the runtime directory: {exc.strerror or exc}".replace(
                    "; set XDG_RUNTIME_DIR instead", ""
                )
                + "; set XDG_RUNTIME_DIR (or KONTEXT_HOME) to a directory of your own"
            ) from exc
