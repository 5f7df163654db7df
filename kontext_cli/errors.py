"""Errors the CLI shows to people, and the exit status each one gives.

::

    KontextError                 1  something went wrong (a bug: see --verbose)
    ├── UsageError               2  a bad argument, option or value
    ├── NotFound                 3  no such agent or credential
    ├── Conflict                 4  it already exists, or login would end a session
    ├── DaemonUnavailable        5  kontextd is not reachable, cannot be started or does not answer
    ├── ConfigInvalid            6  config.toml is invalid
    ├── SecretsUnavailable       7  no secret storage may be used
    ├── Denied                   8  the request path refused (names the layer and reason)
    │   └── ConsentRequired      8  only the user's consent is missing (names the command)
    ├── Forbidden                9  the daemon, its socket or directory belongs to another OS user
    ├── AuditBroken             10  ``audit verify`` found a broken link (names the event)
    ├── PolicyInvalid           11  an org policy file does not parse or validate
    ├── DoctorFailed            12  ``kontext doctor`` found a problem (each with its fix)
    ├── UpstreamFailed          13  an integration's provider refused, failed or is not connected
    ├── LoginFailed             14  a browser login or consent did not complete (timeout, refusal)
    ├── StorageFailed           15  kontextd cannot write its database (full, read-only, removed)
    ├── AgentRefused            16  the caller runs inside an agent's ``kontext exec`` (names it)
    ├── ConfinementUnavailable  17  ``exec.confine = "require"`` and this machine cannot confine
    ├── FederationRefused       18  ``login --federate`` refused the CI token (names the check)
    ├── AlreadyEnded            19  the credential had already ended: nothing was revoked
    ├── Cancelled              130  cancelled with Ctrl-C (nothing more was done)
    └── OutputClosed           141  the output's reader left (``| head``): the rest was not printed

``kontext exec`` passes its command's own status (0–255) through, so its own
failures use codes a command rarely does: 122 denied (also: refused because it
runs inside an agent), 123 confinement required but unavailable, 125 any other
kontext error before the command ran, 126 command not executable, 127 command
not found.

This module is on the ``kontext exec`` fast path: standard library only.
"""

from __future__ import annotations

import os
import sys

from kontext.common import wire

EXEC_DENIED = 122
EXEC_UNCONFINED = 123
EXEC_FAILED = 125
EXEC_NOT_EXECUTABLE = 126
EXEC_NOT_FOUND = 127


class KontextError(Exception):
    """Base class: ``diagnostics()`` is the one line a person sees."""

    exit_code = 1
    exec_code = EXEC_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def diagnostics(self) -> str:
        return self.message


class UsageError(KontextError):
    exit_code = 2


class NotFound(KontextError):
    exit_code = 3


class Conflict(KontextError):
    exit_code = 4


class DaemonUnavailable(KontextError):
    exit_code = 5


class ConfigInvalid(KontextError):
    exit_code = 6


class SecretsUnavailable(KontextError):
    exit_code = 7


class Denied(KontextError):
    exit_code = 8
    exec_code = EXEC_DENIED


class ConsentRequired(Denied):
    """Org policy and the agent allow it; the user has not approved it yet."""


class Forbidden(KontextError):
    exit_code = 9


class AuditBroken(KontextError):
    exit_code = 10


class PolicyInvalid(KontextError):
    exit_code = 11


class DoctorFailed(KontextError):
    exit_code = 12


class UpstreamFailed(KontextError):
    exit_code = 13


class LoginFailed(KontextError):
    exit_code = 14


class StorageFailed(KontextError):
    """kontextd cannot write its database: a full disk, a read-only directory, or the
    file removed or replaced while it ran. Nothing was changed."""

    exit_code = 15


class AgentRefused(KontextError):
    """The daemon (or the confinement around this process) refused an agent's caller."""

    exit_code = 16
    exec_code = EXEC_DENIED


class ConfinementUnavailable(KontextError):
    """``exec.confine = "require"`` and the kernel lacks what confinement needs."""

    exit_code = 17
    exec_code = EXEC_UNCONFINED


class FederationRefused(KontextError):
    """``kontext login --federate``: the CI token or its workload failed a check (the
    line names it: exp, aud, issuer, signature, alg, policy, protected-ref, replay, …)."""

    exit_code = 18


class AlreadyEnded(KontextError):
    """``revoke credential`` of one that was already revoked or expired: nothing to do."""

    exit_code = 19


class Cancelled(KontextError):
    """The user pressed Ctrl-C (SIGINT) before kontext finished; 130 = 128 + SIGINT."""

    exit_code = 130
    exec_code = 130


class OutputClosed(KontextError):
    """stdout is a pipe whose reader has gone (``kontext audit tail | head -1``): what
    was left to print was dropped, quietly. 141 = 128 + SIGPIPE, what a shell reports
    for a C program the closed pipe killed; Python ignores SIGPIPE, so it is said here
    instead of the bug's 1 that Python's own advice (``sys.exit(1)``) would give."""

    exit_code = 141


def output_closed() -> int:
    """Point stdout at /dev/null (nothing more reaches the gone reader, nor fails at
    exit) and give ``OutputClosed``'s status: the one ending of every closed-pipe path
    (our writers, rich's console, click's EPIPE)."""
    try:  # noqa: SIM105 (contextlib is kept off exec's path)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return OutputClosed.exit_code


class CommandNotFound(KontextError):
    exec_code = EXEC_NOT_FOUND


class CommandNotExecutable(KontextError):
    exec_code = EXEC_NOT_EXECUTABLE


BY_WIRE_CODE: dict[str, type[KontextError]] = {
    wire.INVALID: UsageError,
    wire.TOO_LARGE: UsageError,
    wire.NOT_FOUND: NotFound,
    wire.CONFLICT: Conflict,
    wire.DENIED: Denied,
    wire.CONSENT_REQUIRED: ConsentRequired,
    wire.FORBIDDEN: Forbidden,
    wire.SECRETS: SecretsUnavailable,
    wire.CONFIG: ConfigInvalid,
    wire.UPSTREAM: UpstreamFailed,
    wire.STORAGE: StorageFailed,
    wire.AGENT_REFUSED: AgentRefused,
    wire.FEDERATION_REFUSED: FederationRefused,
}


def from_wire(error: object) -> KontextError:
    """Turn a daemon ``{"code", "message"}`` error into the matching exception."""
    if not isinstance(error, dict):
        return KontextError("the daemon sent a malformed error")
    cls = BY_WIRE_CODE.get(str(error.get("code")), KontextError)
    return cls(str(error.get("message", "unknown error"))[:500])
