"""Packaging: one version, a wheel that carries man pages, completions and unit templates.

The wheel is built from a copy of this tree (``pip wheel --no-deps``), so the
test sees what ``pipx install .`` and ``uv tool install .`` would install. Full
installs with pipx and uv run when those tools are on PATH (they are slower).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import KONTEXT, KONTEXTD

from kontext_cli import __version__

ROOT = Path(__file__).resolve().parent.parent
SKIP_IN_COPY = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "node_modules", "tests"
)


def copy_of_tree(tmp: Path) -> Path:
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=SKIP_IN_COPY, symlinks=True)
    return source


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    tmp = tmp_path_factory.mktemp("wheel")
    source = copy_of_tree(tmp)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "out"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (built,) = (tmp / "out").glob("kontext-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def test_the_version_has_one_source() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "kontext.__version__"


def test_kontext_and_kontextd_print_the_package_version() -> None:
    for program, name in ((KONTEXT, "kontext"), (KONTEXTD, "kontextd")):
        proc = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"{name} {__version__}"


def test_the_wheel_has_the_version_and_both_commands(wheel: zipfile.ZipFile) -> None:
    dist = f"kontext-{__version__}.dist-info"
    assert f"Version: {__version__}\n" in wheel.read(f"{dist}/METADATA").decode()
    scripts = wheel.read(f"{dist}/entry_points.txt").decode()
    assert "kontextd = kontextd.main:entry" in scripts
    # kontext is a plain script (an entry point's wrapper would import re first):
    # installers rewrite its '#!python' to the environment's interpreter.
    kontext = wheel.read(f"kontext-{__version__}.data/scripts/kontext").decode()
    assert kontext.startswith("#!python\n") and "from kontext_cli.main import entry" in kontext
    assert "\nimport re\n" not in kontext


def test_the_wheel_carries_man_pages_completions_and_unit_templates(
    wheel: zipfile.ZipFile,
) -> None:
    data = f"kontext-{__version__}.data/data/share/"
    names = set(wheel.namelist())
    for page in sorted((ROOT / "man").glob("*.1")):
        name = f"{data}man/man1/{page.name}"
        assert name in names, f"{page.name} is not in the wheel"
        assert wheel.read(name) == page.read_bytes()
    for script in ("kontext.bash", "_kontext", "kontext.fish"):
        assert f"{data}kontext/completions/{script}" in names
    assert f"{data}kontext/systemd/kontextd.service.in" in names
    assert f"{data}kontext/launchd/kontextd.plist.in" in names
    assert "kontext_cli/gendocs.py" in names and "kontextd/server.py" in names
    assert "kontext/common/wire.py" in names
    for asset in sorted((ROOT / "daemon/kontextd/dashboard/static").iterdir()):
        name = f"kontextd/dashboard/static/{asset.name}"  # the dashboard's scripts and styles
        assert name in names and wheel.read(name) == asset.read_bytes(), asset.name
    assert not any(n.startswith(("tests/", "daemon/")) for n in names)


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (pip install {name})")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["pipx", "uv"])
def test_a_tool_install_gives_working_kontext_and_kontextd(installer: str, tmp_path: Path) -> None:
    tool = _tool(installer)
    source = copy_of_tree(tmp_path)
    bin_dir = tmp_path / "bin"
    env = {
        **os.environ,
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(bin_dir),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
        "UV_TOOL_DIR": str(tmp_path / "uv"),
        "UV_TOOL_BIN_DIR": str(bin_dir),
    }
    command = [tool, "install", "."] if installer == "pipx" else [tool, "tool", "install", "."]
    proc = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for name in ("kontext", "kontextd"):
        version = subprocess.run(
            [str(bin_dir / name), "--version"], capture_output=True, text=True, timeout=60
        )
        assert version.stdout.strip() == f"{name} {__version__}", version.stderr
    unit = subprocess.run(
        [str(bin_dir / "kontext"), "daemon", "install", "--print"],
        capture_output=True,
        text=True,
        env={**env, "KONTEXT_HOME": str(tmp_path / "home")},
        timeout=60,
    )
    assert unit.returncode == 0, unit.stderr
    exec_start = unit.stdout.split("ExecStart=")[1].split()[0]
    assert Path(exec_start).resolve() == (bin_dir / "kontextd").resolve()
    script = subprocess.run(
        [str(bin_dir / "kontext"), "completion", "bash"], capture_output=True, timeout=60
    )
    assert script.stdout == (ROOT / "completions" / "kontext.bash").read_bytes()
