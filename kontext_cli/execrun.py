"""``kontext exec``: get a credential, run one command with it, hold the lease.

This is the hot path of the product — it wraps every script and CI step — so it
imports only the standard library and kontext's small shared modules, and talks
to the daemon with one round trip before the child starts.

The token goes into the child's environment only: never argv, never a file,
never our own environment. Our control connection is the credential's lease;
Python sockets are not inherited across exec, so the child cannot hold it open,
and when this process ends — even by SIGKILL — the kernel closes it and the
daemon revokes the credential.
"""

from __future__ import annotations

import os
import sys

from kontext.common import paths, validate, wire
from kontext_cli import client, confine, errors, reaper

TYPE_CHECKING = False  # typing costs ~3-5 ms to import; mypy still reads this block
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from typing import Any
else:
    # The C module under ``signal`` (always loaded by the interpreter): ``signal.py``
    # only adds enums, whose creation is ~0.4 ms of every exec. Values are plain ints.
    import _signal as signal

# Python ignores SIGPIPE (and SIGXFSZ); a child must start with the defaults.
RESET_IN_CHILD = (signal.SIGPIPE, signal.SIGXFSZ)


class ExecRequest:
    """What the user asked for, as typed (validated by ``run``).

    A plain class, not a dataclass: importing dataclasses (and with it inspect)
    costs ~5 ms, a third of Python's own start-up, on every exec.
    """

    __slots__ = ("agent", "command", "no_confine", "scopes", "target", "ttl")

    def __init__(
        self,
        agent: str,
        command: list[str],
        scopes: list[str] | None = None,
        target: str | None = None,
        ttl: str | None = None,
        no_confine: bool = False,
    ) -> None:
        self.agent = agent
        self.command = command
        self.scopes = scopes if scopes is not None else []
        self.target = target
        self.ttl = ttl
        self.no_confine = no_confine

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExecRequest) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.agent, tuple(self.command)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"ExecRequest({shown})"


VALUE_OPTIONS = {
    "--agent": "agent",
    "-a": "agent",
    "--scope": "scopes",
    "-s": "scopes",
    "--target": "target",
    "-t": "target",
    "--ttl": "ttl",
}


def parse_fast(argv: list[str]) -> ExecRequest | None:
    """Parse ``exec``'s arguments for the common, well-formed case.

    Returns None for anything unusual (help, unknown options, missing values,
    bundled short options) so the full typer CLI handles it and its help and
    error messages stay the only ones.
    """
    values: dict[str, list[str]] = {"agent": [], "scopes": [], "target": [], "ttl": []}
    no_confine, i = False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, inline = arg.partition("=")
        if arg == "--no-confine":
            no_confine = True
        elif name in VALUE_OPTIONS and (eq and name.startswith("--")):
            values[VALUE_OPTIONS[name]].append(inline)
        elif arg in VALUE_OPTIONS and i + 1 < len(argv):
            i += 1
            values[VALUE_OPTIONS[arg]].append(argv[i])
        else:
            return None
        i += 1
    command = argv[i:]
    if not command or not values["agent"]:
        return None
    return ExecRequest(
        agent=values["agent"][-1],
        command=command,
        scopes=values["scopes"],
        target=values["target"][-1] if values["target"] else None,
        ttl=values["ttl"][-1] if values["ttl"] else None,
        no_confine=no_confine,
    )


def _body(req: ExecRequest) -> dict[str, object]:
    try:
        name = validate.agent_name(req.agent)
        for scope in req.scopes:
            validate.scope(scope)
        body: dict[str, object] = {
            "agent": name,
            "scopes": req.scopes,
            "interactive": _interactive(),
        }
        if req.target is not None:
            body["target"] = validate.target(req.target)
        if req.ttl is not None:
            body["ttl"] = validate.duration(req.ttl)
    except validate.InvalidInput as exc:
        raise errors.UsageError(str(exc)) from exc
    current = os.environ.get(wire.ENV_AGENT)
    if current:
        # Only a courtesy: kontextd refuses it from kernel facts, with or without the variable.
        raise errors.AgentRefused(
            f"already running as agent:{current}: an agent cannot start another agent "
            f"(agent:{name}); it may narrow its own token by exchange at $KONTEXT_URL/token"
        )
    return body


def _interactive() -> bool:
    """A person at a terminal, and not CI: only then may exec wait for a browser."""
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return sys.stdin.isatty() and not ci


def _ask_consent(req: ExecRequest, body: dict[str, object]) -> client.Connection:
    """Run the consent flow in the browser (imported only now: it needs httpx)."""
    from kontext_cli.login import consent

    where = paths.resolve()
    scopes = list(req.scopes)
    if not scopes:
        with client.connect(where) as conn:
            scopes = list(conn.call("GET", f"/v1/agents/{body['agent']}")["scopes"])
    target = body.get("target")
    consent.obtain(where, str(body["agent"]), scopes, str(target) if target else None)
    return client.connect(where)


def child_env(issued: dict[str, object]) -> dict[str, str]:
    """Our environment, minus inherited credentials, plus this credential."""
    env = dict(os.environ)
    strip = issued.get("strip_env")
    for name in strip if isinstance(strip, list) else []:
        env.pop(str(name), None)
    audience = issued.get("strip_audience")  # a CI token for kontext, in any variable
    if isinstance(audience, str) and any(v[:3] == "eyJ" for v in env.values()):
        from kontext.common import ci_config  # only now: it reads JSON (slow to import)

        env = {k: v for k, v in env.items() if not ci_config.holds_token_for(v, audience)}
    token = str(issued["token"])
    names = issued.get("env")
    for name in names if isinstance(names, list) else []:
        env[str(name)] = token
    # The gateway's base URLs (broker) or a provider's own token (token delivery).
    values = issued.get("env_values")
    for name, value in values.items() if isinstance(values, dict) else ():
        env[str(name)] = str(value)
    env[wire.ENV_TOKEN] = token
    env[wire.ENV_AGENT] = str(issued["agent"])
    env[wire.ENV_EXPIRES] = str(issued["expires_at"])
    env[wire.ENV_JTI] = str(issued["jti"])
    return env


def run(req: ExecRequest) -> int:
    """Run the command under the agent's credential; return the exit status to use."""
    body = _body(req)
    if not req.command[0]:  # a shell says "command not found" too
        raise errors.CommandNotFound("command not found: '' (the command name is empty)")
    where = paths.resolve()
    child, unconfined = _prepare(req, where)  # it confines itself during the round trip
    # After the fork: a non-dumpable child could not write its own uid_map (its /proc
    # files would be root's); before the token arrives and before any command runs.
    reaper.guard_wrapper()
    conn: client.Connection | None = None
    try:
        helpers = False  # did we start processes of our own (kontextd, a browser) first?
        conn = client.try_connect(where)
        if conn is None:
            conn, helpers = client.connect(where), True
        try:
            issued = conn.call("POST", "/v1/credentials", body)
        except errors.ConsentRequired:
            if not body["interactive"]:
                raise  # never wait for a browser: the message names the grant command
            conn.close()
            conn, helpers = _ask_consent(req, body), True
            issued = conn.call("POST", "/v1/credentials", body)
        keep = _helpers(child) if helpers else set()
        pid, unconfined = _start(req, child, unconfined, issued)
        # Told after the child exists, so 'kontext revoke --kill' can stop it.
        # From here on the command runs: losing the daemon (it stopped or
        # crashed, which revokes the credential) must neither orphan the child
        # nor replace its exit status with ours.
        # Not waited for: the answer is read once the child is done (it is there
        # by then, unless the command is quicker than one round trip).
        told: dict[str, object] = {"pid": pid, "confined": unconfined is None}
        if unconfined:
            told["why"] = unconfined
        if keep:  # not the agent's: 'revoke --kill' leaves them alone
            told["helpers"] = [list(p) for p in sorted(keep)]
        lease = conn
        sent = _reported(lambda: lease.send("POST", "/v1/lease/child", told))
        status = reaper.wait_relaying(pid)
        reaper.end_leftovers(keep)  # before the release: the tree ends with its lease
        if sent and _reported(conn.answer):
            _reported(lambda: lease.call("POST", "/v1/lease/release", {"status": status}))
    finally:
        if child is not None:
            child.discard()
        if conn is not None:
            conn.close()
    return reaper.exit_as(status)


def _prepare(req: ExecRequest, where: paths.Paths) -> tuple[confine.Child | None, str | None]:
    """Fork the child that confines itself; or None and why it will run unconfined."""
    if req.no_confine:
        return None, "--no-confine"
    try:
        confine.landlock_ok()
        plan = confine.Plan(where, os.environ)
    except confine.Unavailable as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"cannot prepare kontext's directories to hide ({exc})"
    plan.check_cwd()
    return confine.Child(req.command, plan), None


def _start(
    req: ExecRequest,
    child: confine.Child | None,
    unconfined: str | None,
    issued: dict[str, Any],
) -> tuple[int, str | None]:
    """Start the command, confined if we can and may; (pid, why unconfined or None)."""
    setting = issued.get("confine")
    setting = setting if isinstance(setting, dict) else {}
    mode, bus = str(setting.get("mode", "auto")), bool(setting.get("session_bus"))
    env = child_env(issued)
    if child is not None and mode != "off":
        unconfined = child.ready()
        if unconfined is None:
            _issue_warnings(issued)
            signal.pthread_sigmask(signal.SIG_BLOCK, {*reaper.FORWARDED, signal.SIGCHLD})
            return child.start(env, bus), None
    if child is not None:
        child.discard()
    if mode == "off":
        unconfined = "exec.confine is off"
    elif mode == "require":
        raise errors.ConfinementUnavailable(
            f"exec.confine is 'require' and this command cannot be confined: {unconfined}"
        )
    elif req.no_confine is False:
        print(
            f"kontext: warning: running agent:{issued['agent']} unconfined: {unconfined}; "
            f"{confine.UNCONFINED_HINT}",
            file=sys.stderr,
            flush=True,
        )
    _issue_warnings(issued)
    signal.pthread_sigmask(signal.SIG_BLOCK, {*reaper.FORWARDED, signal.SIGCHLD})
    return _spawn(req.command, env), unconfined


def _issue_warnings(issued: dict[str, Any]) -> None:
    """The daemon's warnings about this credential (e.g. an integration not connected),
    said once the command will surely start, before it does."""
    for warning in issued.get("warnings") or ():
        _warn(str(warning))


def _helpers(child: confine.Child | None) -> set[tuple[int, int]]:
    """Our children now, but for the pre-forked one: it is the command, not a helper."""
    return {p for p in reaper.children() if child is None or p[0] != child.pid}


def _reported(step: Callable[[], object]) -> bool:
    """One step of a lease message while the command runs; a failure is reported, not raised.

    The command has run (or runs) either way, so nothing here says "run it again":
    a daemon that went away took the credential with it, and that is all to say.
    """
    try:
        step()
    except errors.DaemonUnavailable:
        _warn("kontextd stopped while the command ran; its credential was revoked then")
        return False
    except errors.KontextError as exc:
        _warn(exc.diagnostics())
        return False
    return True


def _warn(message: str) -> None:
    try:  # stderr may be a closed pipe by now
        print(f"kontext: warning: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


def _spawn(command: list[str], env: dict[str, str]) -> int:
    try:
        return os.posix_spawnp(command[0], command, env, setsigmask=(), setsigdef=RESET_IN_CHILD)
    except FileNotFoundError as exc:
        raise errors.CommandNotFound(f"command not found: {command[0]}") from exc
    except PermissionError as exc:
        raise errors.CommandNotExecutable(
            f"cannot execute {command[0]}: permission denied"
        ) from exc
    except OSError as exc:
        raise errors.CommandNotExecutable(f"cannot execute {command[0]}: {exc.strerror}") from exc
