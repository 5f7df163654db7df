"""kontextd as a service of the user's session: a systemd user unit or a launchd agent.

The unit is rendered from the templates in ``daemon/systemd/`` and
``daemon/launchd/`` (installed under ``share/kontext/`` by the wheel). It runs
the installed ``kontextd`` by absolute path, passes ``KONTEXT_HOME`` through when
it is set, restarts after a crash, and holds no secret: only paths.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from kontext_cli import errors

SYSTEMD_UNIT = "kontextd.service"
LAUNCHD_LABEL = "dev.kontext.kontextd"
MARKER = "written by 'kontext daemon install'"
TEMPLATES = {"systemd": "kontextd.service.in", "launchd": "kontextd.plist.in"}


@dataclass(frozen=True)
class Unit:
    """One rendered unit: what it is, where it goes, and how to (de)activate it."""

    kind: str  # "systemd" or "launchd"
    path: Path
    text: str

    def activate(self) -> list[list[str]]:
        if self.kind == "systemd":
            return [
                ["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT],
            ]
        return [["launchctl", "bootstrap", f"gui/{os.getuid()}", str(self.path)]]

    def restart(self) -> list[list[str]]:
        if self.kind == "systemd":
            return [["systemctl", "--user", "restart", SYSTEMD_UNIT]]
        return [["launchctl", "kickstart", "-k", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]]

    def is_running(self) -> bool:
        """Is kontextd running under this unit right now (not merely installed)?"""
        if not self.path.exists() or not session_manager_running(self.kind):
            return False
        if self.kind == "systemd":
            probe = ["systemctl", "--user", "is-active", "--quiet", SYSTEMD_UNIT]
        else:
            probe = ["launchctl", "print", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]
        return run_all([probe]) is None

    def deactivate(self) -> list[list[str]]:
        if self.kind == "systemd":
            return [["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT]]
        return [["launchctl", "bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]]


def platform_kind() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def unit_path(kind: str) -> Path:
    """Where this user's unit lives; ``XDG_CONFIG_HOME`` is honoured (if absolute, per XDG)."""
    if kind == "launchd":
        return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    config = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(config) if os.path.isabs(config) else Path.home() / ".config"
    return base / "systemd" / "user" / SYSTEMD_UNIT


def template_dirs() -> list[Path]:
    """A source checkout's ``daemon/``, else where the wheel put ``share/kontext/``."""
    checkout = Path(__file__).resolve().parent.parent / "daemon"
    prefixes = [sys.prefix, sysconfig.get_path("data"), sysconfig.get_path("data", "posix_user")]
    return [checkout, *(Path(p) / "share" / "kontext" for p in dict.fromkeys(prefixes))]


def template(kind: str) -> str:
    for base in template_dirs():
        path = base / kind / TEMPLATES[kind]
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise errors.KontextError(
        f"the {kind} unit template {TEMPLATES[kind]} is not installed; reinstall kontext"
    )


def kontextd_command() -> list[str]:
    """The installed kontextd, by absolute path: beside this Python first (a venv, pipx, uv)."""
    beside = Path(sys.executable).parent / "kontextd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which("kontextd")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "kontextd"]


def _environment() -> dict[str, str]:
    """Only KONTEXT_HOME goes into a unit: never a token or any other variable."""
    home = os.environ.get("KONTEXT_HOME")
    return {"KONTEXT_HOME": os.path.abspath(home)} if home else {}


def _refuse_control_characters(value: str) -> str:
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise errors.UsageError(f"cannot write {value!r} into a service unit: control characters")
    return value


def _systemd_word(word: str) -> str:
    """One ExecStart word: quoted if needed; ``%`` and ``$`` escaped (systemd.service(5))."""
    word = _refuse_control_characters(word).replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemd_environment(env: dict[str, str]) -> str:
    lines = []
    for name, value in env.items():
        value = _refuse_control_characters(value).replace("%", "%%").replace("\\", "\\\\")
        lines.append('Environment="{}={}"'.format(name, value.replace('"', '\\"')))
    return "\n".join(lines)


def _plist_environment(env: dict[str, str]) -> str:
    if not env:
        return ""
    entries = "".join(
        f"\t\t<key>{escape(k)}</key>\n\t\t<string>{escape(_refuse_control_characters(v))}</string>\n"
        for k, v in env.items()
    )
    return f"\t<key>EnvironmentVariables</key>\n\t<dict>\n{entries}\t</dict>"


def _fill(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(f"@{name}@\n", f"{value}\n" if value else "")
        text = text.replace(f"@{name}@", value)
    return text


def render(kind: str, command: list[str] | None = None, env: dict[str, str] | None = None) -> Unit:
    """The unit for ``kind`` running ``command`` (default: the installed kontextd)."""
    command = command or kontextd_command()
    env = _environment() if env is None else env
    if kind == "systemd":
        values = {
            "EXEC_START": " ".join(_systemd_word(w) for w in command),
            "ENVIRONMENT": _systemd_environment(env),
        }
    else:
        values = {
            "LABEL": LAUNCHD_LABEL,
            "PROGRAM_ARGUMENTS": "\n".join(
                f"\t\t<string>{escape(_refuse_control_characters(w))}</string>" for w in command
            ),
            "ENVIRONMENT": _plist_environment(env),
        }
    return Unit(kind=kind, path=unit_path(kind), text=_fill(template(kind), values))


def session_manager_running(kind: str) -> bool:
    """Is systemd (or launchd) this user's service manager right now?"""
    if kind == "launchd":
        return shutil.which("launchctl") is not None
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return (
        os.path.isdir("/run/systemd/system")  # sd_booted(3)
        and shutil.which("systemctl") is not None
        and bool(runtime)
        and os.path.exists(os.path.join(runtime, "systemd", "private"))
    )


def is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return True
    except OSError:
        return False


def write(unit: Unit) -> bool:
    """Write the unit atomically (0644: it holds no secret); True if it replaced one."""
    if not is_ours(unit.path):
        raise errors.Conflict(
            f"{unit.path} exists and was not written by kontext; move it away and retry"
        )
    existed = unit.path.exists()
    unit.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unit.path.with_name(f".{unit.path.name}.{os.getpid()}.tmp")
    tmp.write_text(unit.text, encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, unit.path)
    return existed


def remove(kind: str) -> Path | None:
    """Remove this user's unit (and systemd's enable link); the path, or None if absent."""
    path = unit_path(kind)
    if not path.exists():
        return None
    if not is_ours(path):
        raise errors.Conflict(f"{path} was not written by kontext; leaving it alone")
    link = path.parent / "default.target.wants" / path.name
    if link.is_symlink():
        link.unlink()
    path.unlink()
    return path


def run_all(commands: list[list[str]]) -> str | None:
    """Run each command; the first failure's one-line reason, or None when all succeed."""
    for command in commands:
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(command)}: {exc}"
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or [f"status {proc.returncode}"])[-1]
            return f"{' '.join(command)}: {reason}"
    return None
