"""Hand edits to config.toml reach a running daemon, as the README tells users to make them.

A valid edit is applied within about a second (or at once with ``kontext config
reload``) and audited with the keys that changed — never their values; an
invalid one changes nothing, is said once, and ``kontext doctor`` names the file
until it is fixed.
"""

from __future__ import annotations

import json
from typing import Any

from conftest import Kontext, api_audit, one_line_error, wait_until

JIRA = """
[integrations.jira]
display_name = "Jira"
env = ["JIRA_TOKEN"]
scopes = { "issues:read" = "Read issues" }
"""
LINEAR = """
[integrations.linear]
env = ["LINEAR_TOKEN"]
scopes = { "issues:read" = "Read issues" }
"""


def config_file(k: Kontext) -> Any:
    path = k.home / "config" / "config.toml"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    return path


def integrations(k: Kontext) -> set[str]:
    return {i["name"] for i in json.loads(k.ok("integration", "list", "--json").stdout)}


def events(k: Kontext, name: str) -> list[dict[str, Any]]:
    return [e for e in api_audit(k, n=500) if e["event"] == name]


def doctor(k: Kontext) -> dict[str, dict[str, Any]]:
    proc = k.run("doctor", "--json")
    return {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


def test_a_hand_edit_is_applied_without_a_restart_and_audited(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    pid = k.daemon_pid
    assert "jira" not in integrations(k)
    config_file(k).write_text(JIRA)
    assert wait_until(lambda: "jira" in integrations(k), timeout=30)
    assert k.daemon_pid == pid  # no restart
    agent = k.agent("jira:issues:read")  # the new integration's scopes are usable at once
    assert k.run("exec", "--agent", agent, "--", "true").returncode == 0
    (reloaded,) = events(k, "config.reloaded")
    assert reloaded["trigger"] == "file changed"
    assert "integrations.jira.display_name" in reloaded["changed"]
    assert "Read issues" not in json.dumps(reloaded)  # the keys that changed, not the values
    assert doctor(k)["applied"]["status"] == "ok"


def test_an_invalid_edit_keeps_the_old_settings_and_doctor_names_the_file(
    fresh_kx: Kontext,
) -> None:
    k = fresh_kx
    path = config_file(k)
    path.write_text(JIRA)
    k.start()
    path.write_text(JIRA + '\n[secrets]\nfallback = "ghp_pasted_by_mistake"\n')
    assert wait_until(lambda: events(k, "config.refused"), timeout=30)
    assert "jira" in integrations(k)  # the old settings stay, whole
    line = one_line_error(k.run("config", "reload"), 6)
    assert str(path) in line and "secrets.fallback" in line and "keeps the settings" in line
    refused = events(k, "config.refused")
    assert len(refused) == 2  # the poller's, once for this content, and the explicit reload's
    assert "ghp_pasted_by_mistake" not in json.dumps(refused)  # never a value in the audit
    checks = doctor(k)
    assert checks["applied"]["status"] == "fail"
    assert str(path) in checks["applied"]["detail"] and "refused" in checks["applied"]["detail"]
    assert checks["config"]["status"] == "fail" and str(path) in checks["config"]["detail"]
    assert k.run("doctor").returncode == 12
    # An integration added along with a mistake is missing; the answer says why.
    path.write_text(JIRA + LINEAR + '\n[secrets]\nfallback = "ghp_pasted_by_mistake"\n')
    assert wait_until(lambda: len(events(k, "config.refused")) == 3, timeout=30)
    show = k.run("integration", "show", "linear")
    connect = k.run("integration", "connect", "linear", "--secret-stdin", input="x\n")
    for proc in (show, connect):
        line = one_line_error(proc, 3)
        assert line.startswith("kontext: no integration 'linear' (known: "), line
        assert line.endswith(
            "; kontextd refused config.toml's last edit and runs the settings before it "
            "(see 'kontext doctor')"
        ), line

    path.write_text(JIRA.replace('"Jira"', '"Jira Cloud"'))
    k.ok("config", "reload")  # or the poller, whichever comes first: applied once
    changed = [key for e in events(k, "config.reloaded") for key in e["changed"]]
    assert changed == ["integrations.jira.display_name"]
    assert doctor(k)["applied"]["status"] == "ok"


def test_config_set_and_reload_are_audited_with_the_caller(fresh_kx: Kontext) -> None:
    k = fresh_kx
    k.start()
    k.ok("config", "set", "keys.rotation_grace", "2m")
    assert k.ok("config", "get", "keys.rotation_grace").stdout.strip() == "2m"
    k.ok("config", "set", "login.require_external_issuer", "false")
    assert k.ok("config", "get", "login.require_external_issuer").stdout.strip() == "false"
    same = k.ok("config", "reload")
    assert "nothing changed" in same.stderr
    asked = [e for e in events(k, "config.reloaded") if e["trigger"] == "kontext config reload"]
    assert asked and all(isinstance(e["caller"]["pid"], int) for e in asked)
    assert {"keys.rotation_grace"} <= {key for e in asked for key in e["changed"]}
    bad = k.run("config", "set", "keys.rotation_grace", "soon")
    assert "keys.rotation_grace" in one_line_error(bad, 2)
