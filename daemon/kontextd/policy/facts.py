"""Facts about a request that the daemon establishes itself, for the org policy.

Policy context carries only what the daemon knows from the kernel or its own
records, never what a request body claims: a rule about ``interactive`` must
not be satisfied by a client that simply says so.

- ``interactive``: the requesting process (the peer of the control socket, from
  SO_PEERCRED) has a controlling terminal — field 7, ``tty_nr``, of
  ``/proc/PID/stat`` is non-zero (proc(5)). It says a terminal is attached, not
  that a person is watching it: a program can open a pseudo-terminal for itself.
  Where there is no ``/proc`` (macOS), it is false. The read costs a few system
  calls, so it is made only when a loaded policy reads ``context.interactive``.
"""

from __future__ import annotations

TTY_FIELD = 4  # tty_nr, counted after the ")" that ends the command name (field 7)


def controlling_terminal(pid: int | None) -> bool:
    """Whether process ``pid`` has a controlling terminal (Linux ``/proc``)."""
    if pid is None or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            after_name = fh.read().rpartition(b")")[2].split()
        return int(after_name[TTY_FIELD]) != 0
    except (OSError, IndexError, ValueError):
        return False
