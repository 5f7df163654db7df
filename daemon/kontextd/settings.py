"""The running daemon's config.toml: noticed, validated, swapped in one step, audited.

The reaper stats the file about once a second (like the policy files); an edit,
or ``kontext config reload``, reads it once, validates all of it and only then
replaces ``core.config`` — one reference, so a request sees the old settings or
the new, never half of each. An invalid edit changes nothing: the old settings
stay, the log and ``kontext doctor`` name the file and the error, and
``config.refused`` is audited (once per content). A valid one is audited as
``config.reloaded`` with the dotted keys that changed — names only, never a
value, so a secret pasted into the wrong key never reaches the audit.

What a changed key means is decided where it is used: a changed integration
``base_url`` does not move an upstream secret with it (``gateway/connections``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from typing import Any

from kontext.common import config as config_mod
from kontext.common import wire
from kontextd.core import Core
from kontextd.errors import ApiError

log = logging.getLogger("kontextd.config")


@dataclass
class Loaded:
    """What the daemon runs, and the newest edit it refused (if any)."""

    sha256: str
    loaded_at: float
    seen: tuple[int, ...] | None = None  # the file's stat when last looked at
    refused_sha256: str | None = None
    error: str | None = None


_lock = threading.Lock()
_state: dict[int, Loaded] = {}


def _stat(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise config_mod.ConfigError(f"{path}: cannot read ({exc.strerror})") from exc


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def started(core: Core) -> None:
    """At start, after ``config_mod.load`` succeeded: remember what was loaded."""
    path = core.paths.config_file
    with _lock:
        _state[id(core)] = Loaded(_digest(_read(path)), time.time(), _stat(path))


def _parse(path: str, data: bytes) -> config_mod.Config:
    try:
        raw = tomllib.loads(data.decode("utf-8")) if data else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise config_mod.ConfigError(f"{path}: not valid TOML ({exc}); fix the file") from exc
    except RecursionError as exc:
        raise config_mod.ConfigError(f"{path}: nested too deeply to read; fix the file") from exc
    return config_mod.parse(raw, path)


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys added, removed or changed between two raw configs."""
    a, b = config_mod.flatten(old), config_mod.flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, None) != b.get(k, None))


def reload(core: Core, trigger: str, caller: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read, validate and apply config.toml; raises ``ApiError`` (config) when invalid.

    ``caller`` (e.g. the peer pid of ``kontext config reload``) goes into the audit."""
    path = core.paths.config_file
    with _lock:
        state = _state.setdefault(id(core), Loaded("", time.time()))
        state.seen = _stat(path)
        data = _read(path)
        digest = _digest(data)
        if digest == state.sha256:
            state.refused_sha256 = state.error = None
            if caller is not None:  # asked for: recorded even when nothing changed
                event = {"event": "config.reloaded", "trigger": trigger, "changed": []}
                _audit(core, event, caller)
            return status(core, changed=[])
        try:
            new = _parse(path, data)
        except config_mod.ConfigError as exc:
            _refused(core, state, digest, str(exc), trigger, caller)
            raise ApiError(wire.CONFIG, f"{exc}; {_kept(state)}") from exc
        changed = changed_keys(core.config.raw, new.raw)
        core.config = new
        core.secrets.fallback_policy = new.secrets_fallback
        state.sha256, state.loaded_at = digest, time.time()
        state.refused_sha256 = state.error = None
        _audit(core, {"event": "config.reloaded", "trigger": trigger, "changed": changed}, caller)
        log.info("config reloaded (%s): %s", trigger, ", ".join(changed) or "no effective change")
        return status(core, changed=changed)


def _kept(state: Loaded) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(state.loaded_at))
    return f"kontextd keeps the settings it loaded at {when}"


def _refused(
    core: Core,
    state: Loaded,
    digest: str,
    error: str,
    trigger: str,
    caller: dict[str, Any] | None,
) -> None:
    if state.refused_sha256 == digest and caller is None:
        return  # said once for this content
    state.refused_sha256, state.error = digest, error
    log.warning("config.toml refused (%s): %s; %s", trigger, error, _kept(state))
    # The error text may quote a value from the file: the audit records only that
    # an edit was refused, and which content (its hash).
    _audit(core, {"event": "config.refused", "trigger": trigger, "sha256": digest}, caller)


def _audit(core: Core, event: dict[str, Any], caller: dict[str, Any] | None) -> None:
    extra = {"caller": caller} if caller else {}
    with core.store.transaction() as tx:
        tx.append_event({**event, "path": core.paths.config_file, **extra})


def reload_if_changed(core: Core) -> bool:
    """Called about once a second by the reaper: a stat, and a reload only on change."""
    path = core.paths.config_file
    with _lock:
        state = _state.get(id(core))
        if state is None or _stat(path) == state.seen:
            return False
    # Refused: logged, audited once, shown by doctor; the old settings stay.
    with contextlib.suppress(ApiError):
        reload(core, "file changed")
    return True


def status(core: Core, changed: list[str] | None = None) -> dict[str, Any]:
    """What ``GET /v1/config`` and ``kontext doctor`` see."""
    state = _state.get(id(core)) or Loaded("", 0.0)
    answer: dict[str, Any] = {
        "path": core.paths.config_file,
        "sha256": state.sha256,
        "loaded_at": state.loaded_at,
        "error": state.error,
    }
    if changed is not None:
        answer["changed"] = changed
    return answer


def check(core: Core) -> dict[str, Any]:
    """``status`` after picking up any edit the poller has not seen yet."""
    reload_if_changed(core)
    return status(core)
