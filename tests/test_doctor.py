"""``kontext doctor``: every check explains what it found and how to fix it.

Exit 0 when nothing failed, 12 when something did; ``--json`` for scripts;
``--fix`` restarts a daemon left over from before an upgrade and tightens modes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Kontext, one_line_error

from kontext_cli import __version__, service

DOCTOR_FAILED = 12
CHECKS = {"config", "modes", "service", "confine", "daemon", "versions", "keyring"}
CHECKS |= {"loopback", "policy", "session", "clock", "applied", "database"}


def report(k: Kontext, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = k.run("doctor", "--json", *args, env=env)
    assert proc.returncode in (0, DOCTOR_FAILED), proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["ok"] == (proc.returncode == 0)
    return result


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result["checks"]}


@pytest.fixture
def xdg(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_without_a_daemon_doctor_passes_warns_and_starts_nothing(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    result = report(fresh_kx, env=xdg)
    checks = by_name(result)
    assert set(checks) == CHECKS
    assert result["ok"] is True
    assert checks["daemon"]["status"] == "warn"
    assert "kontext daemon start" in checks["daemon"]["fix"]
    for name in ("versions", "loopback", "policy", "session", "applied", "database"):
        assert checks[name]["status"] == "skip", checks[name]
    assert not fresh_kx.runtime.exists(), "doctor must not start kontextd"


def test_a_healthy_set_up_passes_with_a_line_per_check(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    fresh_kx.start()
    proc = fresh_kx.ok("doctor", env=xdg)
    lines = proc.stdout.splitlines()
    assert {line.split()[1] for line in lines if not line.startswith(" ")} == CHECKS
    checks = by_name(report(fresh_kx, env=xdg))
    for name in ("daemon", "versions", "loopback", "policy", "modes", "config", "clock"):
        assert checks[name]["status"] == "ok", checks[name]
    for name in ("applied", "database"):
        assert checks[name]["status"] == "ok", checks[name]
    assert __version__ in checks["versions"]["detail"]
    assert str(fresh_kx.port) in checks["loopback"]["detail"]
    assert checks["keyring"]["status"] in ("ok", "warn")
    assert checks["session"]["status"] in ("ok", "skip", "warn")


def test_loose_modes_fail_with_the_chmod_and_fix_tightens_them(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    fresh_kx.start()
    fresh_kx.runtime.chmod(0o755)
    fresh_kx.database.chmod(0o644)
    proc = fresh_kx.run("doctor", env=xdg)
    assert proc.returncode == DOCTOR_FAILED
    assert proc.stderr.strip() == f"kontext: 1 of {len(CHECKS)} checks failed: modes"
    assert f"chmod 700 {fresh_kx.runtime}" in proc.stdout
    assert f"chmod 600 {fresh_kx.database}" in proc.stdout
    assert oct(fresh_kx.runtime.stat().st_mode & 0o777) == "0o755", "doctor alone changes nothing"
    fixed = report(fresh_kx, "--fix", env=xdg)
    assert fixed["ok"] and f"chmod 700 {fresh_kx.runtime}" in fixed["fixed"]
    assert fresh_kx.runtime.stat().st_mode & 0o777 == 0o700
    assert fresh_kx.database.stat().st_mode & 0o777 == 0o600


OLD_DAEMON = (
    "import sys, kontext; kontext.__version__ = '0.0.1'; "
    "from kontextd.main import main; sys.exit(main(['--detach-stderr']))"
)


def test_a_daemon_from_before_an_upgrade_is_found_and_restarted_on_request(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    # A real kontextd that reports an older version, as one left running by the
    # previous install would.
    old = subprocess.Popen(
        [sys.executable, "-c", OLD_DAEMON],
        env=fresh_kx.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert old.stderr is not None
    old.stderr.read()  # closed once it serves
    old.stderr.close()
    try:
        checks = by_name(report(fresh_kx, env=xdg))
        assert checks["versions"]["status"] == "fail"
        assert "0.0.1" in checks["versions"]["detail"]
        assert "kontext doctor --fix" in checks["versions"]["fix"]
        proc = fresh_kx.run("doctor", env=xdg)
        assert proc.returncode == DOCTOR_FAILED
        assert proc.stderr.strip().endswith("checks failed: versions")

        fixed = report(fresh_kx, "--fix", env=xdg)
        assert fixed["ok"], fixed
        assert any("restarted kontextd" in line for line in fixed["fixed"])
        assert old.wait(timeout=15) == 0, "the old daemon stops cleanly"
        status = json.loads(fresh_kx.ok("daemon", "status", "--json").stdout)
        assert status["version"] == __version__ and status["pid"] != old.pid
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()


def test_a_broken_policy_file_fails_naming_file_and_line(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    fresh_kx.start()
    policy_d = fresh_kx.home / "config" / "policy.d"
    policy_d.mkdir(parents=True)
    broken = policy_d / "50-broken.cedar"
    broken.write_text("// an edit in progress\n\nforbid (principal, action resource);\n")
    checks = by_name(report(fresh_kx, env=xdg))
    assert checks["policy"]["status"] == "fail"
    assert f"{broken}:3:" in checks["policy"]["detail"]
    assert "kontext policy check" in checks["policy"]["fix"]


def test_an_invalid_config_fails_and_is_left_as_it_is(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    config = fresh_kx.home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[secrets]\nfallback = "sometimes"\n')
    checks = by_name(report(fresh_kx, env=xdg))
    assert checks["config"]["status"] == "fail"
    assert "secrets.fallback" in checks["config"]["detail"]
    assert config.read_text() == '[secrets]\nfallback = "sometimes"\n'


def test_a_refused_fallback_without_a_keyring_is_a_failure(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    from kontextd.secrets import _working_keyring

    if _working_keyring() is not None:
        pytest.skip("an OS keyring works here")
    fresh_kx.ok("config", "set", "secrets.fallback", "refuse")
    keyring = by_name(report(fresh_kx, env=xdg))["keyring"]
    assert keyring["status"] == "fail"
    assert "cannot start" in keyring["detail"]
    assert "secrets.fallback allow" in keyring["fix"]


def test_a_service_unit_whose_kontextd_is_gone_fails(
    fresh_kx: Kontext, xdg: dict[str, str]
) -> None:
    assert by_name(report(fresh_kx, env=xdg))["service"]["status"] == "skip"
    fresh_kx.ok("daemon", "install", env=xdg)
    assert by_name(report(fresh_kx, env=xdg))["service"]["status"] == "ok"
    unit = Path(xdg["XDG_CONFIG_HOME"]) / "systemd" / "user" / "kontextd.service"
    stale = service.render("systemd", command=["/gone/bin/kontextd"], env={})
    unit.write_text(stale.text)
    check = by_name(report(fresh_kx, env=xdg))["service"]
    assert check["status"] == "fail" and "/gone/bin/kontextd" in check["detail"]
    assert check["fix"] == "kontext daemon install"


def test_no_color_and_pipes_get_plain_text(fresh_kx: Kontext, xdg: dict[str, str]) -> None:
    proc = fresh_kx.run("doctor", env=xdg)
    assert "\x1b[" not in proc.stdout
    assert proc.stdout.startswith("ok    config")


def test_bad_options_are_one_line(fresh_kx: Kontext) -> None:
    assert "--fx" in one_line_error(fresh_kx.run("doctor", "--fx"), 2)


def test_doctor_is_documented_with_its_exit_status() -> None:
    root = Path(__file__).resolve().parent.parent
    page = (root / "man" / "kontext-doctor.1").read_text()
    assert "\\fB12\\fR" in page and ".SH EXAMPLES" in page
    readme = (root / "README.md").read_text()
    assert "kontext doctor" in readme and "| 12 |" in readme


def test_a_service_unit_for_another_home_is_a_warning(
    fresh_kx: Kontext, xdg: dict[str, str], tmp_path: Path
) -> None:
    fresh_kx.ok("daemon", "install", env={**xdg, "KONTEXT_HOME": str(tmp_path / "other")})
    check = by_name(report(fresh_kx, env=xdg))["service"]
    assert check["status"] == "warn" and "another KONTEXT_HOME" in check["detail"]
    assert check["fix"] == "kontext daemon install"


FUTURE_DAEMON = (
    "import sys, time; now = time.time; time.time = lambda: now() + 3600; "
    "from kontextd.main import main; sys.exit(main(['--detach-stderr']))"
)


def test_a_clock_that_went_back_is_a_failure(fresh_kx: Kontext, xdg: dict[str, str]) -> None:
    # A daemon that ran while the clock was an hour ahead left audit events
    # "from the future": as if the clock was set back since.
    ahead = subprocess.Popen(
        [sys.executable, "-c", FUTURE_DAEMON],
        env=fresh_kx.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert ahead.stderr is not None
    ahead.stderr.read()
    ahead.stderr.close()
    try:
        check = by_name(report(fresh_kx, env=xdg))["clock"]
        assert check["status"] == "fail", check
        assert "went back" in check["detail"] and "timedatectl" in check["fix"]
    finally:
        fresh_kx.stop()
        ahead.wait(timeout=15)


def test_an_unreachable_daemon_is_a_failure_with_its_reason(
    fresh_kx: Kontext, xdg: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / ("h" * 110)  # the socket path cannot fit in a sockaddr_un
    proc = fresh_kx.run("doctor", "--json", env={**xdg, "KONTEXT_HOME": str(home)})
    assert proc.returncode == DOCTOR_FAILED
    daemon = by_name(json.loads(proc.stdout))["daemon"]
    assert daemon["status"] == "fail" and "too long" in daemon["detail"]
    assert proc.stderr.strip().endswith("checks failed: daemon")
