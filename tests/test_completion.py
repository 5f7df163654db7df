"""``kontext completion SHELL`` prints exactly the committed, generated script."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import KONTEXT, Kontext, one_line_error

ROOT = Path(__file__).resolve().parent.parent
FILES = {"bash": "kontext.bash", "zsh": "_kontext", "fish": "kontext.fish"}


@pytest.mark.parametrize("shell", sorted(FILES))
def test_completion_prints_the_committed_script(fresh_kx: Kontext, shell: str) -> None:
    proc = subprocess.run(
        [KONTEXT, "completion", shell],
        capture_output=True,
        env=fresh_kx.env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "completions" / FILES[shell]).read_bytes()
    assert not fresh_kx.runtime.exists(), "printing a script must not start the daemon"


def test_an_unknown_shell_is_one_line_and_exit_2(fresh_kx: Kontext) -> None:
    line = one_line_error(fresh_kx.run("completion", "tcsh"), 2)
    assert "tcsh" in line and "bash" in line


def test_the_printed_bash_script_completes_when_sourced(fresh_kx: Kontext) -> None:
    script = (
        'source <("$1" completion bash); COMP_LINE="kontext daemon ins"; '
        "COMP_POINT=${#COMP_LINE}; _kontext; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    proc = subprocess.run(
        ["bash", "-c", script, "driver", KONTEXT],
        capture_output=True,
        text=True,
        env=fresh_kx.env,
        timeout=60,
    )
    assert proc.stdout.split() == ["install"], proc.stderr


def test_the_printed_zsh_script_loads(fresh_kx: Kontext) -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (.ci/run installs it)")
    script = 'autoload -U compinit && compinit -u && source <("$1" completion zsh) && echo ok'
    proc = subprocess.run(
        [zsh, "-f", "-c", script, KONTEXT],
        capture_output=True,
        text=True,
        env=fresh_kx.env,
        timeout=60,
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_help_names_the_install_steps(fresh_kx: Kontext) -> None:
    text = fresh_kx.ok("completion", "--help").stdout
    assert "bash-completion/completions/kontext" in text
    assert "~/.config/fish/completions/kontext.fish" in text


def test_agent_name_arguments_complete_as_agent_refs(kx: Kontext, tmp_path: Path) -> None:
    """Any argument shown as agent:NAME (consent revoke, ...) completes agent:NAME live."""
    from kontext_cli import gendocs

    tree = gendocs.load_tree()
    takers = [
        c for c in gendocs.leaves(tree) if any(a.metavar == "agent:NAME" for a in c.arguments)
    ]
    if not takers:
        pytest.skip("no command takes an agent:NAME argument")
    name = kx.agent("github:pulls:read", prefix="ref")
    script = tmp_path / "kontext.bash"
    script.write_text(gendocs.bash_script(tree))
    for command in takers:
        line = f"{KONTEXT} {' '.join(command.path)} "
        driver = (
            'source "$1"; COMP_LINE=$2; COMP_POINT=${#COMP_LINE}; _kontext; '
            "printf '%s\\n' \"${COMPREPLY[@]}\""
        )
        proc = subprocess.run(
            ["bash", "-c", driver, "driver", str(script), line],
            capture_output=True,
            text=True,
            env=kx.env,
            timeout=60,
        )
        assert f"agent:{name}" in proc.stdout.split(), (command.name, proc.stderr)


def test_integration_names_complete_from_the_built_in_catalogue(fresh_kx: Kontext) -> None:
    from kontext.common import integrations

    script = ROOT / "completions" / "kontext.bash"
    driver = (
        'source "$1"; COMP_LINE=$2; COMP_POINT=${#COMP_LINE}; _kontext; '
        "printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    for command in ("connect", "disconnect"):
        proc = subprocess.run(
            ["bash", "-c", driver, "driver", str(script), f"kontext integration {command} "],
            capture_output=True,
            text=True,
            env=fresh_kx.env,
            timeout=60,
        )
        assert sorted(proc.stdout.split()) == sorted(integrations.BUILTINS), proc.stderr


def test_scopes_and_integrations_complete_from_the_config(fresh_kx: Kontext) -> None:
    """A custom ``[integrations.jira]`` completes like the built-ins, without a daemon."""
    config = fresh_kx.home / "config" / "config.toml"
    config.parent.mkdir(mode=0o700)
    config.write_text(
        '[integrations.jira]\nenv = ["JIRA_TOKEN"]\n'
        'scopes = { "issues:read" = "Read issues", "issues:write" = "Edit issues" }\n'
    )

    def bash_completes(line: str) -> list[str]:
        script = (
            'source <("$1" completion bash); COMP_LINE="$2"; '
            "COMP_POINT=${#COMP_LINE}; _kontext; printf '%s\\n' \"${COMPREPLY[@]}\""
        )
        # The script runs the kontext the line names, found on PATH as a shell would.
        path = f"{Path(KONTEXT).parent}:{fresh_kx.env.get('PATH', '')}"
        proc = subprocess.run(
            ["bash", "-c", script, "driver", KONTEXT, line],
            capture_output=True,
            text=True,
            env={**fresh_kx.env, "PATH": path},
            timeout=60,
        )
        return proc.stdout.split()

    assert bash_completes("kontext agent create bot --allow ji") == [
        "jira:issues:read",
        "jira:issues:write",
    ]
    assert bash_completes("kontext integration connect j") == ["jira"]
    assert "github:pulls:read" in bash_completes("kontext exec --scope gi")
    words = fresh_kx.ok("complete-words", "integration").stdout.split()
    assert words == ["github", "jira", "slack"]
    assert not fresh_kx.runtime.exists(), "completing must not start the daemon"


def test_login_federate_completes_its_platforms(fresh_kx: Kontext) -> None:
    script = ROOT / "completions" / "kontext.bash"
    driver = (
        'source "$1"; COMP_LINE=$2; COMP_POINT=${#COMP_LINE}; _kontext; '
        "printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    for line, expected in (
        ("kontext login --federate ", ["github-actions", "gitlab", "oidc"]),
        ("kontext login --federate g", ["github-actions", "gitlab"]),
    ):
        proc = subprocess.run(
            ["bash", "-c", driver, "driver", str(script), line],
            capture_output=True,
            text=True,
            env=fresh_kx.env,
            timeout=60,
        )
        assert sorted(proc.stdout.split()) == expected, proc.stderr
