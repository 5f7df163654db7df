"""The end-of-run line naming skips for lack of a system package (tests/missing_packages.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.missing_packages import summary

DEMO = """
import pytest
def test_a(): pytest.skip("Debian chromium is not installed (.ci/run installs it)")
def test_b(): pytest.skip("libfaketime is not installed (Debian: faketime)")
def test_c(): pytest.skip("zsh is not installed (.ci/run installs it)")
def test_d(): pytest.skip("no command takes an agent:NAME argument")
"""


def test_the_line_names_each_package_and_the_install_command() -> None:
    line = summary(
        [
            "Debian chromium is not installed (.ci/run installs it)",
            "Debian chromium is not installed (.ci/run installs it)",
            "libfaketime is not installed (Debian: faketime)",
            "no command takes an agent:NAME argument",
        ]
    )
    assert line == [
        "3 tests skipped for lack of system packages (chromium: 2, faketime: 1); "
        "install them with: sudo apt-get install chromium faketime"
    ]
    assert summary(["no command takes an agent:NAME argument"]) == []


def test_pytest_prints_it_last(tmp_path: Path) -> None:
    (tmp_path / "test_demo.py").write_text(DEMO)
    conftest = Path(__file__).with_name("conftest.py")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-ra",
            "--rootdir",
            str(tmp_path),
            "--confcutdir",
            str(tmp_path),
            "-p",
            "tests.conftest",
            str(tmp_path / "test_demo.py"),
        ],
        capture_output=True,
        text=True,
        cwd=conftest.parent.parent,
        timeout=120,
    )
    lines = proc.stdout.strip().splitlines()
    assert "skipped for lack of system packages" in lines[-2]  # above only the counts
    wanted = [line for line in lines if "skipped for lack of system packages" in line]
    assert wanted == [
        "3 tests skipped for lack of system packages (chromium: 1, faketime: 1, zsh: 1); "
        "install them with: sudo apt-get install chromium faketime zsh"
    ], proc.stdout
