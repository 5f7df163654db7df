"""What a confined ``kontext exec`` child must not see, beyond kontext's own directories:
other sockets of the user's through which a process outside the agent's tree would
act for it — outside its confinement, and, to kontextd, as the user.

- the session D-Bus (the Secret Service keeps kontext's keys and upstream secrets;
  ``systemd --user`` and desktop portals start programs on request), unless the agent
  may use it;
- the systemd user manager's own socket (``systemd-run --user`` talks to it directly
  when the bus is out of reach);
- tmux servers (``tmux new-window CMD`` or ``send-keys`` into another pane runs a
  command in the user's session): the user's server socket, and the default socket
  directory, replaced by an empty one of the agent's own, where its own tmux works.

Paths only, from the environment ``kontext exec`` was started with (the user's, not
the agent's); ``kontext_cli.confine`` mounts over them.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    Environ = dict[str, str] | os._Environ[str]


def default_home(environ: Environ) -> list[str]:
    """Where kontext keeps things without ``KONTEXT_HOME`` (platformdirs' choices on
    Linux, without importing it): the XDG directories, or their usual defaults."""
    home = environ.get("HOME") or os.path.expanduser("~")

    def xdg(name: str, default: str) -> str:
        value = environ.get(name, "")
        return value if os.path.isabs(value) else os.path.join(home, default)

    runtime = environ.get("XDG_RUNTIME_DIR") or f"/tmp/runtime-{os.getuid()}"  # noqa: S108
    return [
        os.path.join(xdg("XDG_CONFIG_HOME", ".config"), "kontext"),
        os.path.join(xdg("XDG_DATA_HOME", ".local/share"), "kontext"),
        os.path.join(runtime, "kontext"),
        os.path.join(xdg("XDG_STATE_HOME", ".local/state"), "kontext", "log"),
    ]


def bus_sockets(environ: Environ) -> list[str]:
    """Path sockets of the session D-Bus: ``$XDG_RUNTIME_DIR/bus`` and every
    ``unix:path=`` in ``DBUS_SESSION_BUS_ADDRESS`` (abstract ones are Landlock's)."""
    found: list[str] = []
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        found.append(os.path.join(runtime, "bus"))
    for address in environ.get("DBUS_SESSION_BUS_ADDRESS", "").split(";"):
        transport, _, params = address.partition(":")
        if transport != "unix":
            continue
        for pair in params.split(","):
            key, _, value = pair.partition("=")
            if key == "path" and value:
                try:
                    found.append(_unescape(value))
                except ValueError:  # a malformed escape: not a path we could hide
                    continue
    return sockets(found)


def launcher_sockets(environ: Environ) -> list[str]:
    """Sockets that start commands on request, hidden whatever the agent may use: the
    systemd user manager's (``$XDG_RUNTIME_DIR/systemd/private``) and the tmux server
    the user runs exec in (``$TMUX``'s first field)."""
    found = []
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        found.append(os.path.join(runtime, "systemd", "private"))
    tmux = environ.get("TMUX", "").split(",")[0]
    if os.path.isabs(tmux):
        found.append(tmux)
    return sockets(found)


def tmux_dir(environ: Environ) -> str:
    """tmux's default socket directory, ``${TMUX_TMPDIR:-/tmp}/tmux-UID``."""
    base = environ.get("TMUX_TMPDIR") or "/tmp"  # noqa: S108 - tmux's own default
    return os.path.realpath(os.path.join(base, f"tmux-{os.getuid()}"))


def sockets(paths: list[str]) -> list[str]:
    """The real paths of those that are sockets now, once each."""
    out = []
    for path in paths:
        try:
            real = os.path.realpath(path)
            if (os.stat(real).st_mode & 0o170000) == 0o140000 and real not in out:  # a socket
                out.append(real)
        except OSError:
            continue
    return out


def _unescape(value: str) -> str:
    """D-Bus address values escape bytes as %XX."""
    if "%" not in value:
        return value
    raw, i = bytearray(), 0
    while i < len(value):
        if value[i] == "%":
            raw += bytes.fromhex(value[i + 1 : i + 3])
            i += 3
        else:
            raw += value[i].encode()
            i += 1
    return raw.decode(errors="replace")
