"""``kontext daemon install|uninstall``: a systemd user unit (or launchd agent) for kontextd.

The container has no systemd user manager, so install writes the unit and prints
the command that enables it; ``systemd-analyze verify`` checks what it wrote.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, KONTEXT, Kontext, one_line_error

from kontext_cli import service

ROOT = Path(__file__).resolve().parent.parent
SECRET = "ghp_should-never-reach-a-unit-file"


@pytest.fixture
def xdg(fresh_kx: Kontext, tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose config lives in a temp dir, holding a secret."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "GITHUB_TOKEN": SECRET}


def unit_file(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "kontextd.service"


def test_install_writes_a_user_unit_and_prints_how_to_enable_it(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    proc = fresh_kx.ok("daemon", "install", env=xdg)
    unit = unit_file(xdg)
    assert f"wrote {unit}" in proc.stdout
    assert "systemctl --user enable --now kontextd.service" in proc.stdout
    text = unit.read_text()
    assert f"ExecStart={BIN / 'kontextd'}\n" in text
    assert os.path.isabs(text.split("ExecStart=")[1].split()[0])
    assert f'Environment="KONTEXT_HOME={fresh_kx.home}"' in text
    assert "Restart=on-failure" in text
    assert SECRET not in text and "GITHUB_TOKEN" not in text
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert not fresh_kx.runtime.exists(), "install must not start the daemon"


def test_the_unit_passes_systemd_analyze_verify(
    fresh_kx: Kontext, xdg: dict[str, str], tmp_path: Path
) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    fresh_kx.ok("daemon", "install", env=xdg)
    # verify also checks Documentation=man:...: point man at the generated pages.
    man1 = tmp_path / "man" / "man1"
    man1.mkdir(parents=True)
    for page in (ROOT / "man").glob("*.1"):
        (man1 / page.name).symlink_to(page)
    proc = subprocess.run(
        [analyze, "verify", str(unit_file(xdg))],
        capture_output=True,
        text=True,
        env={**os.environ, "MANPATH": str(tmp_path / "man")},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


def test_without_kontext_home_the_unit_has_no_environment(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KONTEXT_HOME"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [KONTEXT, "daemon", "install", "--print"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "Environment=" not in proc.stdout
    assert proc.stdout.startswith("# kontextd as a systemd user service")
    assert not any(tmp_path.iterdir()), "--print writes nothing"


def test_reinstall_updates_and_uninstall_removes(fresh_kx: Kontext, xdg: dict[str, str]) -> None:
    fresh_kx.ok("daemon", "install", env=xdg)
    assert "updated" in fresh_kx.ok("daemon", "install", env=xdg).stdout
    assert f"removed {unit_file(xdg)}" in fresh_kx.ok("daemon", "uninstall", env=xdg).stdout
    assert not unit_file(xdg).exists()
    again = fresh_kx.ok("daemon", "uninstall", env=xdg)
    assert "no kontextd service is installed" in again.stderr


def test_a_unit_kontext_did_not_write_is_left_alone(fresh_kx: Kontext, xdg: dict[str, str]) -> None:
    unit = unit_file(xdg)
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/true\n")
    assert "not written by kontext" in one_line_error(fresh_kx.run("daemon", "install", env=xdg), 4)
    assert "not written by kontext" in one_line_error(
        fresh_kx.run("daemon", "uninstall", env=xdg), 4
    )
    assert unit.read_text() == "[Service]\nExecStart=/usr/bin/true\n"


def test_a_kontext_home_with_a_newline_is_refused_and_nothing_written(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    env = {**xdg, "KONTEXT_HOME": str(fresh_kx.home) + "\nExecStartPre=/bin/sh"}
    line = one_line_error(fresh_kx.run("daemon", "install", env=env), 2)
    assert "control characters" in line
    assert not unit_file(xdg).exists()


def test_special_characters_are_escaped_for_systemd() -> None:
    unit = service.render(
        "systemd", command=["/opt/my tools/kontextd"], env={"KONTEXT_HOME": '/h/100%"x'}
    )
    assert 'ExecStart="/opt/my tools/kontextd"\n' in unit.text
    assert 'Environment="KONTEXT_HOME=/h/100%%\\"x"\n' in unit.text


def test_the_launchd_agent_is_a_valid_plist(tmp_path: Path) -> None:
    unit = service.render(
        "launchd", command=["/opt/kontext/bin/kontextd"], env={"KONTEXT_HOME": "/h/a&b"}
    )
    plist = plistlib.loads(unit.text.encode())
    assert plist["Label"] == service.LAUNCHD_LABEL
    assert plist["ProgramArguments"] == ["/opt/kontext/bin/kontextd"]
    assert plist["EnvironmentVariables"] == {"KONTEXT_HOME": "/h/a&b"}
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert "EnvironmentVariables" not in plistlib.loads(
        service.render("launchd", command=["/k"], env={}).text.encode()
    )
    plutil = shutil.which("plutil")
    if plutil:  # macOS
        path = tmp_path / "agent.plist"
        path.write_text(unit.text)
        assert subprocess.run([plutil, "-lint", str(path)], capture_output=True).returncode == 0
