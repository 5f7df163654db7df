"""Confining ``kontext exec``'s child with the kernel's own primitives (Linux).

The child forks from the wrapper before the wrapper asks kontextd for the
credential, and confines itself while that round trip runs (on the other core):

1. ``unshare(CLONE_NEWUSER | CLONE_NEWNS)``, its own uid and gid mapped to
   themselves (``setgroups`` denied): the same user, in a mount namespace of its own.
2. An empty, read-only tmpfs over each of kontext's directories (config, data
   with the fallback secrets, runtime with the control socket, logs), and
   ``/dev/null`` bound over each path socket of the session D-Bus (the Secret
   Service holds kontext's keys and upstream secrets) unless the agent may use it,
   and over the sockets that run commands for it outside its tree (the systemd user
   manager's, the user's tmux server: ``kontext_cli.hidden``); an empty tmpfs of
   its own over tmux's default socket directory; every directory above those
   bound onto itself, so the agent cannot rename or remove it (``pinned``). Then
   ``PR_SET_NO_NEW_PRIVS`` and a seccomp filter refusing ``TIOCSTI`` (typing into
   the terminal, which the user's shell would read and run once exec returns).
3. When the answer arrives: root only — a second user + mount namespace, so the
   mounts above are locked (``MNT_LOCKED``: a namespace's root keeps its
   capabilities across ``execve``, everyone else loses them); then a Landlock
   domain that handles no file right but scopes signals and abstract Unix
   sockets (ABI >= 6). Landlock also refuses ptrace — and with it
   ``/proc/PID/{root,cwd,fd,environ,mem}`` — of every process outside the domain.
   Then ``execve``.

The token reaches the child over a pipe after step 2, never argv or a file. A
failure in step 1 or 2 is reported to the wrapper, which then runs unconfined
(``auto``, saying so) or refuses (``require``). Nothing here is a promise the
kernel does not keep; ``tests/security/test_confinement.py`` attacks each one.
"""

from __future__ import annotations

import os
import sys

from kontext.common.paths import Paths
from kontext_cli import errors
from kontext_cli.hidden import bus_sockets, default_home, launcher_sockets, tmux_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

MIN_LANDLOCK_ABI = 6  # LANDLOCK_SCOPE_SIGNAL and LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
HIDE_OPTIONS = "mode=0555,size=4k,nr_inodes=2"
HIDE_FLAGS = 1 | 2 | 4 | 8  # MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
OWN_OPTIONS = "mode=0700,size=1m,nr_inodes=256"  # tmux checks: its own, no one else's
OWN_FLAGS = 2 | 4 | 8  # MS_NOSUID | MS_NODEV | MS_NOEXEC
FIX = {
    "linux": "confinement needs Linux",
    "landlock": "needs Linux 6.12 or later with Landlock enabled (lsm=landlock,...)",
    "tiocsti": "set the sysctl dev.tty.legacy_tiocsti=0 (or run on x86_64 or aarch64)",
    "userns": (
        "allow unprivileged user namespaces (sysctl user.max_user_namespaces, "
        "kernel.apparmor_restrict_unprivileged_userns=0, or a container started with them)"
    ),
}
UNCONFINED_HINT = 'set exec.confine = "off" to run unconfined without this warning'


class Unavailable(Exception):
    """Confinement cannot be had here: the reason, and what would fix it."""


class Plan:
    """What the child hides: kontext's directories, the session bus's sockets, the
    sockets that run commands (always) and tmux's directory (replaced by its own)."""

    __slots__ = ("bus", "hide", "launchers", "own", "pinned", "uid")

    def __init__(
        self, where: Paths, environ: dict[str, str] | os._Environ[str], create: bool = True
    ) -> None:
        self.uid = os.getuid()
        self.hide: list[str] = []
        for path in (where.config, where.data, where.runtime, where.logs):
            real = os.path.realpath(path)
            if not os.path.isdir(real):
                if not create:
                    continue
                # Missing, the agent could create it (a config.toml of its own): make it first.
                os.makedirs(real, mode=0o700, exist_ok=True)
            self._add(real)
        if "KONTEXT_HOME" in environ:  # the default home may hold another daemon's keys
            for path in default_home(environ):
                if os.path.isdir(path):
                    self._add(os.path.realpath(path))
        self.bus = [p for p in bus_sockets(environ) if not self.hidden(p)]
        self.own: list[str] = []
        tmux = tmux_dir(environ)
        try:  # made now, or the user's tmux could start a server there while the agent runs
            if create:
                os.makedirs(tmux, mode=0o700, exist_ok=True)
            if os.path.isdir(tmux) and not self.hidden(tmux):
                self.own.append(tmux)
        except OSError:
            pass  # tmux could not make it either
        self.launchers = [
            p
            for p in launcher_sockets(environ)
            if not self.hidden(p) and not any(p.startswith(o + "/") for o in self.own)
        ]
        self.pinned = pinned(self.hide + self.own + self.bus + self.launchers)

    def _add(self, path: str) -> None:
        if not self.hidden(path):
            self.hide = [h for h in self.hide if not h.startswith(path + "/")] + [path]

    def hidden(self, path: str) -> bool:
        return any(path == h or path.startswith(h + "/") for h in self.hide)

    def check_cwd(self) -> None:
        """An agent cannot start inside a directory it is about to lose."""
        try:
            cwd = os.getcwd()
        except OSError:
            return
        if self.hidden(cwd):
            raise errors.UsageError(
                f"the working directory {cwd} is inside kontext's own files, which an agent "
                "may not see; cd elsewhere and run the command again"
            )


def pinned(paths: list[str]) -> list[str]:
    """Every directory above ``paths`` but ``/``, parents first. Each is bound onto
    itself in the agent's namespace: a mount point cannot be renamed or removed there
    (EBUSY), so the agent cannot move ``KONTEXT_HOME`` (or ``~/.config``) aside and
    build a config, ``policy.d`` or control socket of its own where kontext looks."""
    above = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent != "/" and parent not in paths:
            above.add(parent)
            parent = os.path.dirname(parent)
    return sorted(above, key=lambda p: (p.count("/"), p))


def landlock_ok() -> None:
    """Raise ``Unavailable`` unless this kernel has Landlock with scoping (ABI >= 6)."""
    if not sys.platform.startswith("linux"):
        raise Unavailable(f"this is {sys.platform}; {FIX['linux']}")
    from kontext_cli import linux

    abi = linux.landlock_abi()
    if abi < MIN_LANDLOCK_ABI:
        have = f"Landlock ABI {abi}" if abi else "no Landlock"
        raise Unavailable(f"this kernel has {have} (scoping needs ABI 6); {FIX['landlock']}")
    machine = os.uname().machine
    if machine not in linux.TTY_FILTER and _legacy_tiocsti():
        raise Unavailable(
            f"kontext cannot filter TIOCSTI on {machine} and this kernel lets any process "
            f"type into its terminal; {FIX['tiocsti']}"
        )


def _legacy_tiocsti() -> bool:
    """Whether the kernel lets a process without CAP_SYS_ADMIN use TIOCSTI (6.2+)."""
    try:
        with open("/proc/sys/dev/tty/legacy_tiocsti", "rb") as fh:
            return fh.read().strip() != b"0"
    except OSError:
        return True


# -- in the child -------------------------------------------------------------


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _own_namespaces(uid: int, gid: int) -> None:
    """A user + mount namespace in which we are still ``uid``/``gid``."""
    from kontext_cli import linux

    linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNS)
    _write("/proc/self/setgroups", b"deny")
    _write("/proc/self/uid_map", b"%d %d 1" % (uid, uid))
    _write("/proc/self/gid_map", b"%d %d 1" % (gid, gid))


def hide(plan: Plan) -> None:
    """Steps 1 and 2 (see the module docstring); raises ``Unavailable`` or OSError."""
    from kontext_cli import linux

    try:
        _own_namespaces(plan.uid, os.getgid())
    except OSError as exc:
        raise Unavailable(f"no user namespace ({exc.strerror}); {FIX['userns']}") from exc
    for path in plan.hide:
        linux.mount("none", path, "tmpfs", HIDE_FLAGS, HIDE_OPTIONS)
    for path in plan.own:
        linux.mount("none", path, "tmpfs", OWN_FLAGS, OWN_OPTIONS)
    for path in plan.bus + plan.launchers:
        linux.mount("/dev/null", path, None, linux.MS_BIND, None)
    # After the mounts above, and recursive: a copy of each comes along, so they also
    # cover what a working directory on the mount beneath still reaches.
    for path in plan.pinned:
        linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC, None)
    # Here, not in seal: loading the filter (~0.2 ms) overlaps the wrapper's round trip.
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    machine = os.uname().machine
    if machine in linux.TTY_FILTER:  # elsewhere landlock_ok required legacy_tiocsti=0
        linux.deny_tiocsti(machine)


def seal(plan: Plan, session_bus: bool) -> None:
    """Step 3: lock the mounts (root), the Landlock domain."""
    from kontext_cli import linux

    if session_bus:
        for path in plan.bus:
            linux.umount2(path, linux.MNT_DETACH)
    if plan.uid == 0:
        _own_namespaces(0, os.getgid())
    scoped = linux.LANDLOCK_SCOPE_SIGNAL
    if not session_bus:
        scoped |= linux.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
    linux.landlock_scope(scoped)


class Child:
    """A forked child that confines itself, then waits for its environment.

    Protocol: the child answers ``ok`` or ``no:REASON`` on ``status`` once hidden;
    the wrapper then sends ``B`` (session bus allowed) or ``-`` and the environment
    (``NAME=VALUE`` entries separated by NUL) on ``control`` and closes it — or
    closes it at once to send the child away. An exec failure comes back as
    ``E<errno>``; the status pipe is close-on-exec, so EOF means the command runs.
    """

    def __init__(self, command: list[str], plan: Plan) -> None:
        self.plan = plan
        control_r, self._control = os.pipe()
        self._status, status_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the forked child
            _child(command, plan, control_r, status_w, (self._control, self._status))
        os.close(control_r)
        os.close(status_w)
        self.started = False
        self._reader = b""

    def ready(self) -> str | None:
        """None when the child is confined; else why it could not be."""
        while b"\n" not in self._reader:
            chunk = os.read(self._status, 4096)
            if not chunk:
                return "the confined child ended before it was ready"
            self._reader += chunk
        line, _, self._reader = self._reader.partition(b"\n")
        return None if line == b"ok" else line.decode(errors="replace").removeprefix("no:")

    def start(self, env: dict[str, str], session_bus: bool) -> int:
        """Hand over the environment; the pid once the command runs (errors raised)."""
        payload = b"\0".join(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items())
        try:
            os.write(self._control, b"B" if session_bus else b"-")
            view = memoryview(payload)
            while view:
                view = view[os.write(self._control, view) :]
        except BrokenPipeError:
            pass  # it died: its status says how
        os.close(self._control)
        self.started = True
        answer = self._reader
        while chunk := os.read(self._status, 4096):
            answer += chunk
        os.close(self._status)
        if answer.startswith(b"E"):
            os.waitpid(self.pid, 0)
            _raise_exec_error(env, answer[1:].decode(errors="replace"))
        return self.pid

    def discard(self) -> None:
        """Send the child away without running anything."""
        if self.started:
            return
        self.started = True
        for fd in (self._control, self._status):
            os.close(fd)
        os.waitpid(self.pid, 0)


def _raise_exec_error(env: dict[str, str], raw: str) -> None:
    number, _, what = raw.partition(":")
    code = int(number) if number.isdigit() else 0
    if what.startswith("confine "):
        raise errors.KontextError(f"could not confine the command: {what[8:]}")
    if code == 2:  # ENOENT
        raise errors.CommandNotFound(f"command not found: {what}")
    if code == 13:  # EACCES
        raise errors.CommandNotExecutable(f"cannot execute {what}: permission denied")
    raise errors.CommandNotExecutable(f"cannot execute {what}: {os.strerror(code)}")


def _child(  # pragma: no cover - runs in the forked child
    command: list[str], plan: Plan, control: int, status: int, parents: tuple[int, int]
) -> None:
    """The forked child's whole life: never returns, never runs Python's exit."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        for fd in parents:
            os.close(fd)
        try:
            hide(plan)
        except (Unavailable, OSError) as exc:
            os.write(status, b"no:" + str(exc).encode(errors="replace")[:900] + b"\n")
            os._exit(0)
        os.write(status, b"ok\n")
        message = _read_all(control)
        if not message:
            os._exit(0)
        env = dict(e.split(b"=", 1) for e in message[1:].split(b"\0") if b"=" in e)
        try:
            seal(plan, message[:1] == b"B")
        except OSError as exc:
            os.write(status, b"E%d:confine %s" % (exc.errno or 0, str(exc).encode()))
            os._exit(125)
        for signum in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)  # what posix_spawn's setsigdef did
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        try:
            decoded = {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
            os.execvpe(command[0], command, decoded)  # noqa: S606 - argv as given, no shell
        except OSError as exc:
            os.write(status, b"E%d:%s" % (exc.errno or 0, os.fsencode(command[0])))
    finally:
        os._exit(127)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def probe(where: Paths) -> str | None:
    """Try everything ``exec`` does, in a throwaway child: None if it all works here,
    else why not (for ``kontext doctor``)."""
    import tempfile

    try:
        landlock_ok()
        plan = Plan(where, os.environ, create=False)  # doctor creates nothing of kontext's
    except (Unavailable, OSError) as exc:
        return str(exc)
    scratch = tempfile.mkdtemp(prefix="kontext-probe-")
    plan.hide.append(scratch)  # at least one directory to hide, as exec always has
    try:
        return _probe(plan)
    finally:
        os.rmdir(scratch)


def _probe(plan: Plan) -> str | None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked child
        try:
            os.close(read)
            hide(plan)
            seal(plan, False)
            os.write(write, b"ok")
        except BaseException as exc:  # reported to the parent, whatever it is
            os.write(write, str(exc).encode(errors="replace")[:900])
        finally:
            os._exit(0)
    os.close(write)
    answer = _read_all(read).decode(errors="replace")
    os.close(read)
    os.waitpid(pid, 0)
    return None if answer == "ok" else answer or "the probe ended without an answer"
