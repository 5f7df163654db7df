"""Checks that read files only: config, directory and file modes, the service unit."""

from __future__ import annotations

import os
import shlex
import stat

from kontext.common import config as config_mod
from kontext.common.paths import Paths
from kontext_cli import service
from kontext_cli.doctor import Check, fail, ok, skip, warn

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def config(where: Paths) -> Check:
    try:
        config_mod.load(where.config_file)
    except config_mod.ConfigError as exc:
        return fail("config", str(exc), f"edit {where.config_file} or 'kontext config set ...'")
    if not os.path.exists(where.config_file):
        return ok("config", "no config file: the defaults apply")
    return ok("config", f"{where.config_file} is valid")


def _private_paths(where: Paths) -> list[tuple[str, int]]:
    """Every path kontext keeps private, with the mode it must not exceed."""
    wanted = [(d, PRIVATE_DIR) for d in (where.runtime, where.data, where.logs, where.secrets)]
    files = [where.socket, where.lock, where.http_info, where.log_file, where.database]
    files += [where.database + "-wal", where.database + "-shm"]
    if os.path.isdir(where.secrets) and not os.path.islink(where.secrets):
        files += [os.path.join(where.secrets, n) for n in sorted(os.listdir(where.secrets))]
    return wanted + [(f, PRIVATE_FILE) for f in files]


def _problem(path: str, limit: int) -> tuple[str, bool] | None:
    """What is wrong with ``path`` (and whether chmod fixes it), or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symlink", False
    if st.st_uid != os.getuid():
        return f"{path} belongs to uid {st.st_uid}, not you", False
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~limit:
        return f"{path} is mode {mode:o} (want {limit:o})", True
    return None


def directories(where: Paths) -> Check:
    found = [(p, limit, _problem(p, limit)) for p, limit in _private_paths(where)]
    problems = [(p, limit, found) for p, limit, found in found if found is not None]
    if not os.path.isdir(where.runtime):
        return ok("modes", f"{where.runtime} does not exist yet (kontextd creates it 0700)")
    if not problems:
        return ok("modes", "directories are 0700 and the socket and files 0600, all yours")
    text = "; ".join(found[0] for _, _, found in problems)
    if all(found[1] for _, _, found in problems):
        commands = [f"chmod {limit:o} {shlex.quote(p)}" for p, limit, _ in problems]
        return fail("modes", text, " && ".join(commands) + " (or: kontext doctor --fix)")
    return fail("modes", text, "remove what is not yours (or a symlink) and restart kontextd")


def tighten_modes(where: Paths) -> list[str]:
    """chmod what is too open (never following a symlink, never another user's file)."""
    done = []
    for path, limit in _private_paths(where):
        found = _problem(path, limit)
        if found is not None and found[1]:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            os.chmod(path, mode & limit, follow_symlinks=False)
            done.append(f"chmod {mode & limit:o} {path}")
    return done


def service_unit() -> Check:
    kind = service.platform_kind()
    path = service.unit_path(kind)
    if not path.exists():
        return skip("service", "no service unit: kontextd starts on demand")
    if not service.is_ours(path):
        return warn("service", f"{path} was not written by kontext", "kontext daemon install")
    text = path.read_text(encoding="utf-8", errors="replace")
    wanted = service.render(kind).text
    program = service.kontextd_command()[0]
    if program not in text and not os.path.exists(_exec_start(text)):
        return fail(
            "service",
            f"{path} runs {_exec_start(text)}, which no longer exists",
            "kontext daemon install",
        )
    if text != wanted:
        return warn(
            "service",
            f"{path} differs from what this kontext would write (an older kontext, "
            "or another KONTEXT_HOME)",
            "kontext daemon install",
        )
    return ok("service", f"{path} runs {program}")


def _exec_start(text: str) -> str:
    """The program a systemd unit or launchd plist starts."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))[0].replace("%%", "%")
        if line.startswith("<string>/"):
            return line.removeprefix("<string>").removesuffix("</string>")
    return ""
