"""``kontext daemon stop`` under a running exec: said before it happens, and after it.

The stop revokes every live credential, so it says how many before it does; an
exec whose daemon went away while its command ran reports that once, without
telling the user to "run the command again" (the command ran), and exits with
the command's own status.
"""

from __future__ import annotations

from conftest import Kontext, without_not_connected


def test_stop_says_what_it_revokes_and_exec_does_not_ask_to_run_again(
    fresh_kx: Kontext,
) -> None:
    k = fresh_kx
    agent = k.agent("github:pulls:read")
    proc, env = k.token_for(agent)
    pid = k.daemon_pid
    stop = k.ok("daemon", "stop")
    assert stop.stderr.splitlines() == [
        "stopping kontextd: 1 live credential(s) will be revoked "
        "('kontext credential list' shows them)",
        f"stopped kontextd (pid {pid}); 1 live credential(s) revoked",
    ]
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.close()  # the command ends now, after its daemon did
    assert proc.wait(timeout=30) == 0  # the command's own status
    err = proc.stderr.read()
    k.close(proc)
    assert without_not_connected(err) == (
        "kontext: warning: kontextd stopped while the command ran; its credential was "
        "revoked then\n"
    )
    assert env["KONTEXT_CREDENTIAL_ID"]
    assert k.ok("daemon", "stop").stderr == "kontextd is not running\n"
