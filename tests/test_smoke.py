"""The shortest story: an agent, an exec, a token the child sees and introspection trusts."""

from __future__ import annotations

import signal

from conftest import Kontext


def test_exec_hands_the_child_a_live_token_that_dies_with_it(kx: Kontext) -> None:
    name = kx.agent("github:pulls:read")
    proc, env = kx.token_for(name)
    token = env["GITHUB_TOKEN"]
    assert env["KONTEXT_TOKEN"] == token
    assert env["KONTEXT_AGENT"] == name
    assert kx.introspect(token)["active"] is True
    proc.communicate("", timeout=10)
    assert proc.returncode == 0
    assert kx.introspect(token) == {"active": False}


def test_sigkilled_wrapper_loses_its_credential(kx: Kontext) -> None:
    from conftest import wait_until

    name = kx.agent("github:pulls:read")
    proc, env = kx.token_for(name)
    assert kx.introspect(env["KONTEXT_TOKEN"])["active"] is True
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=5)
    assert wait_until(lambda: kx.introspect(env["KONTEXT_TOKEN"]) == {"active": False}, timeout=1.0)
    kx.close(proc)
