"""``kontext integration``: the catalogue, connecting with an API key, listing, disconnecting."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys

from tests.conftest import Kontext, api_audit, one_line_error, short_home
from tests.upstream.fake_github import API_KEY, LOGIN, FakeGitHub
from tests.upstream.fake_slack import TOKEN as SLACK_TOKEN
from tests.upstream.fake_slack import USER as SLACK_USER
from tests.upstream.fake_slack import FakeSlack

KEY = "sk_test_TOTALLYsecret_4242"


def write_config(k: Kontext, text: str) -> None:
    (k.home / "config").mkdir(mode=0o700, exist_ok=True)
    (k.home / "config" / "config.toml").write_text(text)


def test_list_shows_the_built_ins_not_connected(kx: Kontext) -> None:
    rows = {r["name"]: r for r in json.loads(kx.ok("integration", "list", "--json").stdout)}
    assert rows["github"]["display_name"] == "GitHub"
    assert rows["github"]["delivery"] == "broker"
    assert rows["github"]["base_url"] == "https://api.github.com"
    assert rows["github"]["scopes"]["pulls:read"] == "Read pull requests"
    assert rows["slack"]["env"] == ["SLACK_TOKEN", "SLACK_BOT_TOKEN"]
    table = kx.ok("integration", "list").stdout
    assert table.splitlines()[0].split()[:2] == ["NAME", "DISPLAY"]


def test_connect_with_secret_stdin_never_shows_the_secret(fresh_kx: Kontext) -> None:
    fresh_kx.start()
    # Slack's identity call is checked in test_slack_refuses_with_ok_false_and_200 below.
    proc = fresh_kx.ok(
        "integration", "connect", "slack", "--secret-stdin", "--no-verify", input=KEY + "\n"
    )
    assert KEY not in proc.stdout + proc.stderr
    assert "connected slack" in proc.stderr
    listed = (
        fresh_kx.ok("integration", "list").stdout
        + fresh_kx.ok("integration", "list", "--json").stdout
    )
    assert KEY not in listed
    slack = next(
        r
        for r in json.loads(fresh_kx.ok("integration", "list", "--json").stdout)
        if r["name"] == "slack"
    )
    assert slack["connected"] is True and slack["method"] == "api_key"
    assert KEY not in json.dumps(api_audit(fresh_kx))
    assert KEY not in fresh_kx.log_file.read_text()
    assert KEY not in fresh_kx.database.read_bytes().decode("latin-1")
    event = next(e for e in api_audit(fresh_kx) if e["event"] == "integration.connected")
    assert (event["integration"], event["method"]) == ("slack", "api_key")


def test_a_file_fallback_secret_is_0600(fresh_kx: Kontext) -> None:
    fresh_kx.start()
    fresh_kx.ok("integration", "connect", "github", "--secret-stdin", "--no-verify", input=KEY)
    path = fresh_kx.home / "data" / "secrets" / "integration-github"
    if not path.exists():  # a real keyring holds it
        return
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_disconnect_forgets_the_secret_and_is_audited(fresh_kx: Kontext) -> None:
    fresh_kx.start()
    fresh_kx.ok("integration", "connect", "github", "--secret-stdin", "--no-verify", input=KEY)
    assert "disconnected github" in fresh_kx.ok("integration", "disconnect", "github").stderr
    assert "was not connected" in fresh_kx.ok("integration", "disconnect", "github").stderr
    rows = json.loads(fresh_kx.ok("integration", "list", "--json").stdout)
    assert not next(r for r in rows if r["name"] == "github")["connected"]
    assert any(e["event"] == "integration.disconnected" for e in api_audit(fresh_kx))


def test_bad_input_is_one_line_and_changes_nothing(kx: Kontext) -> None:
    line = one_line_error(kx.run("integration", "connect", "Git Hub", "--secret-stdin"), 2)
    assert "invalid integration name" in line
    line = one_line_error(
        kx.run("integration", "connect", "nosuch", "--secret-stdin", input="x"), 3
    )
    assert "no integration 'nosuch'" in line
    line = one_line_error(kx.run("integration", "connect", "slack", "--secret-stdin", input=""), 2)
    assert "no secret on stdin" in line
    bad = kx.run("integration", "connect", "slack", "--secret-stdin", input="two words")
    assert "visible ASCII" in one_line_error(bad, 2) and "two words" not in bad.stderr
    rows = json.loads(kx.ok("integration", "list", "--json").stdout)
    assert not next(r for r in rows if r["name"] == "slack")["connected"]


def test_oauth_connect_without_a_client_id_says_what_to_set(kx: Kontext) -> None:
    line = one_line_error(kx.run("integration", "connect", "github", "--no-browser"), 2)
    assert "integrations.github.oauth.client_id" in line and "--secret-stdin" in line


def test_a_user_defined_integration_with_routes(fresh_kx: Kontext) -> None:
    write_config(
        fresh_kx,
        """
[integrations.jira]
display_name = "Jira"
env = ["JIRA_TOKEN"]
base_url_env = ["JIRA_BASE_URL"]
scopes = { "issues:read" = "Read issues" }
base_url = "https://acme.atlassian.net"
routes = [{ route = "GET /rest/api/3/issue/{key}", scope = "issues:read", target = "{key}" }]
""",
    )
    fresh_kx.start()
    jira = next(
        r
        for r in json.loads(fresh_kx.ok("integration", "list", "--json").stdout)
        if r["name"] == "jira"
    )
    assert (jira["display_name"], jira["delivery"]) == ("Jira", "broker")
    assert jira["routes"] == [
        {"route": "GET /rest/api/3/issue/{key}", "scope": "jira:issues:read", "target": "{key}"}
    ]
    agent = fresh_kx.agent("jira:issues:read", prefix="jira-bot")
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    proc = fresh_kx.ok("exec", "--agent", agent, "--", sys.executable, "-c", script)
    env = json.loads(proc.stdout)
    assert env["JIRA_TOKEN"] == env["KONTEXT_TOKEN"]
    assert env["JIRA_BASE_URL"] == f"{fresh_kx.base_url}/gw/jira"


def test_invalid_integration_config_is_one_clear_line(fresh_kx: Kontext) -> None:
    cases = [
        ('[integrations.github]\nbase_url = "http://api.github.com"\n', "must use https"),
        (
            '[integrations.github]\nroutes = [{ route = "GET /x/**/y", scope = "pulls:read" }]\n',
            "** may only end a pattern",
        ),
        (
            '[integrations.github]\nroutes = [{ route = "GET /x", scope = "nope:read" }]\n',
            "needs a route and one of the scopes",
        ),
        ('[integrations.github]\ndelivery = "token"\n', "needs credential = 'oauth'"),
        ('[integrations.github]\ncolour = "blue"\n', "unknown key 'colour'"),
    ]
    for text, message in cases:
        write_config(fresh_kx, text)
        line = one_line_error(fresh_kx.run("integration", "list"), 6)
        assert message in line, (text, line)


def test_the_route_catalogue_is_shown_in_text_and_json(kx: Kontext) -> None:
    rows = {r["name"]: r for r in json.loads(kx.ok("integration", "list", "--json").stdout)}
    first = {"route": "GET /repos/{owner}/{repo}", "scope": "github:metadata:read"}
    assert {**first, "target": "{owner}/{repo}"} in rows["github"]["routes"]
    assert json.loads(kx.ok("integration", "show", "github", "--json").stdout) == rows["github"]
    text = kx.ok("integration", "show", "github").stdout
    assert "  GET /repos/{owner}/{repo} -> github:metadata:read on {owner}/{repo}\n" in text
    assert "  POST /api/chat.postMessage -> slack:chat:write\n" in (
        kx.ok("integration", "show", "slack").stdout
    )
    line = one_line_error(kx.run("integration", "show", "gitlab"), 3)
    assert "no integration 'gitlab' (known: github, slack" in line


def _home_with_github_at(url: str) -> Kontext:
    k = Kontext(short_home())
    (k.home / "config").mkdir(mode=0o700)
    (k.home / "config" / "config.toml").write_text(f'[integrations.github]\nbase_url = "{url}"\n')
    k.start()
    return k


def test_an_api_key_is_checked_with_the_upstream_before_it_is_stored() -> None:
    connect = ("integration", "connect", "github", "--secret-stdin")
    with FakeGitHub() as gh:
        k = _home_with_github_at(gh.url)
        try:
            wrong = one_line_error(k.run(*connect, input="ghp_not_the_key\n"), 13)
            assert wrong == (
                f"kontext: github refused this key (HTTP 401 at GET {gh.url}/user): nothing "
                "was stored; check the key (or pass --no-verify to store it unchecked)"
            )
            assert not _github_row(k)["connected"]
            asked = [s for s in gh.seen if s.path == "/user"]
            assert asked and asked[-1].headers["Authorization"] == "Bearer ghp_not_the_key"
            right = k.ok(*connect, input=API_KEY + "\n")
            assert right.stderr.splitlines()[-1] == (
                f"connected github as {LOGIN} (key checked with GET /user; stored by "
                "kontextd, agents never see it)"
            )
            assert _github_row(k)["connected"]
            before = len(gh.seen)
            unchecked = k.ok(*connect, "--no-verify", input="ghp_whatever\n")
            assert "(key not checked: --no-verify;" in unchecked.stderr
            assert len(gh.seen) == before  # not asked
            for secret in (API_KEY, "ghp_not_the_key", "ghp_whatever"):
                assert secret not in k.log_file.read_text()
                assert secret not in json.dumps(api_audit(k))
        finally:
            k.stop()
            shutil.rmtree(k.home, ignore_errors=True)


def test_slack_refuses_with_ok_false_and_200() -> None:
    """Slack's Web API refuses a bad token with HTTP 200 and ``{"ok": false}``: a key
    it refused that way is not stored; a good one is, naming the bot."""
    connect = ("integration", "connect", "slack", "--secret-stdin")
    with FakeSlack() as slack:
        k = Kontext(short_home())
        write_config(k, f'[integrations.slack]\nbase_url = "{slack.url}"\n')
        k.start()
        try:
            wrong = one_line_error(k.run(*connect, input="xoxb-not-the-token\n"), 13)
            assert wrong == (
                f"kontext: slack refused this key (invalid_auth at POST {slack.url}/api/auth.test)"
                ": nothing was stored; check the key (or pass --no-verify to store it unchecked)"
            )
            assert slack.seen[-1] == ("POST", "/api/auth.test", "Bearer xoxb-not-the-token")
            assert not _row(k, "slack")["connected"]
            right = k.ok(*connect, input=SLACK_TOKEN + "\n")
            assert right.stderr.splitlines()[-1].startswith(f"connected slack as {SLACK_USER} ")
            assert _row(k, "slack")["connected"]
            for secret in (SLACK_TOKEN, "xoxb-not-the-token"):
                assert secret not in k.log_file.read_text()
                assert secret not in json.dumps(api_audit(k))
        finally:
            k.stop()
            shutil.rmtree(k.home, ignore_errors=True)


def test_an_upstream_that_cannot_be_reached_names_no_verify() -> None:
    k = _home_with_github_at("http://127.0.0.1:9")  # discard: nothing listens
    try:
        line = one_line_error(
            k.run("integration", "connect", "github", "--secret-stdin", input="ghp_x\n"), 13
        )
        assert line.startswith("kontext: could not check the key with github (ConnectError at ")
        assert line.endswith(
            "nothing was stored; try again, or pass --no-verify to store it unchecked"
        )
        assert not _github_row(k)["connected"]
    finally:
        k.stop()
        shutil.rmtree(k.home, ignore_errors=True)


def _github_row(k: Kontext) -> dict[str, object]:
    return _row(k, "github")


def _row(k: Kontext, name: str) -> dict[str, object]:
    rows = json.loads(k.ok("integration", "list", "--json").stdout)
    return dict(next(r for r in rows if r["name"] == name))


def test_exec_warns_at_once_when_an_integration_is_not_connected(fresh_kx: Kontext) -> None:
    agent = fresh_kx.agent("github:pulls:read")
    proc = fresh_kx.run("exec", "--agent", agent, "--", "true")
    assert proc.returncode == 0
    assert proc.stderr == (
        "kontext: warning: github is not connected: its calls through the gateway will fail "
        "until you run 'kontext integration connect github'\n"
    )
    fresh_kx.ok("integration", "connect", "github", "--secret-stdin", "--no-verify", input=KEY)
    assert fresh_kx.run("exec", "--agent", agent, "--", "true").stderr == ""
