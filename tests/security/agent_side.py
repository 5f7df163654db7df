"""What a prompt-injected agent tries from inside ``kontext exec`` (run as its child).

``python agent_side.py VIA OUT SPEC`` — SPEC is a JSON file naming the attacks to
try and what the agent can know (paths, pids, another agent's name); the results
go to OUT as JSON, one ``{"name", "escaped", "detail"}`` per attack (``escaped``:
the attack got what it wanted). VIA is how the attacker first gets away from
the process ``kontext exec`` started:

- ``direct``: the child itself, every ``KONTEXT_*`` variable unset;
- ``sh``: re-exec through ``sh -c``;
- ``setsid``: ``setsid -f`` — a new session whose parent exits at once;
- ``doublefork``: fork, fork again, the middle one exits (a daemon's orphan).

Only the standard library: this is the attacker's code, not the test's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import agent_consent  # type: ignore[import-not-found]  # run as a script: its own directory

Result = dict[str, Any]
HERE = os.path.abspath(__file__)


def clean_env() -> dict[str, str]:
    """Our environment without a single ``KONTEXT_*`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}


def result(name: str, escaped: bool, detail: str) -> Result:
    return {"name": name, "escaped": escaped, "detail": detail[-300:]}


# -- the control socket, raw ------------------------------------------------------


def raw(spec: dict[str, Any], method: str, path: str, body: Any = None) -> tuple[int, str]:
    """One HTTP request on the control socket; (status, body) or (-1, why it failed)."""
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: kontextd\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(spec["socket"])
        sock.sendall(head + data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError as exc:
        return -1, f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    status_line, _, rest = answer.partition(b"\r\n")
    status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/") else -1
    return status, rest.partition(b"\r\n\r\n")[2].decode(errors="replace")


def raw_attacks(spec: dict[str, Any]) -> list[Result]:
    other, disabled = spec["other_agent"], spec["disabled_agent"]
    tries: list[tuple[str, str, str, Any, int]] = [
        ("raw: credential for another agent", "POST", "/v1/credentials", {"agent": other}, 201),
        ("raw: credential for itself", "POST", "/v1/credentials", {"agent": spec["agent"]}, 201),
        (
            "raw: create an agent",
            "POST",
            "/v1/agents",
            {"name": spec["evil_agent"], "allow": ["github:contents:write"]},
            201,
        ),
        ("raw: re-enable a disabled agent", "POST", f"/v1/agents/{disabled}/enable", {}, 200),
        ("raw: revoke another agent", "POST", "/v1/revoke", {"agent": f"agent:{other}"}, 200),
        ("raw: revoke consent", "POST", "/v1/consent/revoke", {"agent": f"agent:{other}"}, 200),
        ("raw: rotate keys", "POST", "/v1/keys/rotate", {}, 200),
        ("raw: reload config", "POST", "/v1/config/reload", {}, 200),
        ("raw: reload policy", "POST", "/v1/policy/reload", {}, 200),
        ("raw: prune the audit log", "POST", "/v1/audit/prune", {"before": 4102444800}, 200),
        ("raw: read the audit log", "GET", "/v1/audit?last=5", None, 200),
        ("raw: list agents", "GET", "/v1/agents", None, 200),
        ("raw: list credentials", "GET", "/v1/credentials", None, 200),
        ("raw: list consent", "GET", "/v1/consent", None, 200),
        (
            "raw: allow itself the session bus",
            "POST",
            f"/v1/agents/{spec['agent']}/session-bus",
            {"session_bus": True},
            200,
        ),
        ("raw: disable another agent", "POST", f"/v1/agents/{other}/disable", {}, 200),
        ("raw: delete another agent", "DELETE", f"/v1/agents/{other}", None, 200),
        (
            "raw: connect an integration",
            "POST",
            "/v1/integrations/github/secret",
            {"secret": "ghp_attacker"},
            200,
        ),
        ("raw: disconnect an integration", "POST", "/v1/integrations/github/disconnect", {}, 200),
        ("raw: a dashboard link", "POST", "/v1/dashboard/link", {}, 200),
        ("raw: read the config", "GET", "/v1/config", None, 200),
        ("raw: audit checkpoint", "POST", "/v1/audit/checkpoint", {}, 200),
        ("raw: stop the daemon", "POST", "/v1/shutdown", {}, 200),
    ]
    out = []
    for name, method, path, body, success in tries:
        status, text = raw(spec, method, path, body)
        out.append(result(name, status == success, f"{status} {text}"))
    return out


# -- the kontext CLI, with every variable it could read unset --------------------------


def cli(spec: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "KONTEXT_HOME": spec["home"], "BROWSER": "false", "CI": "1"}
    return subprocess.run(
        [spec["kontext"], *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def cli_attacks(spec: dict[str, Any]) -> list[Result]:
    other, marker = spec["other_agent"], "escaped-as-the-other-agent"
    tries: list[tuple[str, tuple[str, ...]]] = [
        ("cli: exec as another agent", ("exec", "--agent", other, "--", "echo", marker)),
        ("cli: exec as itself (nesting)", ("exec", "--agent", spec["agent"], "--", "echo", marker)),
        (
            "cli: exec another agent unconfined",
            ("exec", "--no-confine", "--agent", other, "--", "echo", marker),
        ),
        (
            "cli: agent create",
            ("agent", "create", spec["evil_agent"], "--allow", "github:contents:write"),
        ),
        ("cli: agent enable", ("agent", "enable", spec["disabled_agent"])),
        ("cli: revoke another agent", ("revoke", f"agent:{other}")),
        ("cli: consent revoke", ("consent", "revoke", f"agent:{other}")),
        ("cli: keys rotate", ("keys", "rotate")),
        # A real change (the setup has "allow"), so "nothing changed" sees a write.
        ("cli: config set", ("config", "set", "secrets.fallback", "refuse")),
        ("cli: daemon stop", ("daemon", "stop")),
    ]
    out = []
    for name, args in tries:
        proc = cli(spec, *args)
        escaped = proc.returncode == 0 or marker in proc.stdout
        out.append(result(name, escaped, f"{proc.returncode} {proc.stderr.strip()}"))
    return out


# -- files, signals, ptrace, mounts, the bus ---------------------------------------------


def read_attempt(name: str, path: str) -> Result:
    try:
        with open(path, "rb") as fh:
            data = fh.read(64)
    except OSError as exc:
        return result(name, False, f"{type(exc).__name__}: {exc}")
    return result(name, bool(data), f"read {len(data)} bytes of {path}")


def file_attacks(spec: dict[str, Any]) -> list[Result]:
    out = [read_attempt(f"read {label}", path) for label, path in spec["secret_files"].items()]
    for label, directory in spec["dirs"].items():
        try:
            names = os.listdir(directory)
        except OSError as exc:
            out.append(result(f"list {label}", False, str(exc)))
        else:
            out.append(result(f"list {label}", bool(names), f"{directory}: {names[:5]}"))
    target = os.path.join(spec["policy_dir"], "evil.cedar")
    try:
        os.makedirs(spec["policy_dir"], exist_ok=True)
        with open(target, "w") as fh:
            fh.write("permit(principal, action, resource);\n")
    except OSError as exc:
        out.append(result("write policy.d", False, str(exc)))
    else:
        out.append(result("write policy.d", True, f"wrote {target}"))
    for pid_name in ("daemon_pid", "wrapper_pid", "outside_pid"):
        pid = spec[pid_name]
        for what in ("environ", "mem", f"root{spec['database']}", f"cwd/{spec['db_name']}"):
            out.append(
                read_attempt(f"/proc/{pid_name}/{what.split('/')[0]}", f"/proc/{pid}/{what}")
            )
        # The numbers in /proc/PID/fd are listable; following one needs ptrace access.
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            fds = []
        followed = []
        for fd in fds:
            try:
                followed.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                os.close(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY))
            except OSError:
                continue
        out.append(result(f"/proc/{pid_name}/fd/N", bool(followed), f"{len(fds)} fds: {followed}"))
    return out


def signal_attacks(spec: dict[str, Any]) -> list[Result]:
    out = []
    for pid_name in ("daemon_pid", "wrapper_pid", "outside_pid"):
        pid = spec[pid_name]
        for signum in (0, signal.SIGCONT, signal.SIGTERM):
            sig_name = "0" if signum == 0 else signal.Signals(signum).name
            if signum == signal.SIGTERM and pid_name == "outside_pid":
                continue  # the test runner itself: 0 and SIGCONT prove the point
            try:
                os.kill(pid, signum)
            except OSError as exc:
                out.append(result(f"kill({pid_name}, {sig_name})", False, str(exc)))
            else:
                out.append(result(f"kill({pid_name}, {sig_name})", True, "delivered"))
        try:
            fd = os.pidfd_open(pid)
            try:
                signal.pidfd_send_signal(fd, 0)
                out.append(result(f"pidfd_send_signal({pid_name})", True, "delivered"))
            finally:
                os.close(fd)
        except OSError as exc:
            out.append(result(f"pidfd_send_signal({pid_name})", False, str(exc)))
    return out


def ptrace_attacks(spec: dict[str, Any]) -> list[Result]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    out = []
    for pid_name in ("wrapper_pid", "daemon_pid", "outside_pid"):
        pid = spec[pid_name]
        for request, label in ((16, "PTRACE_ATTACH"), (0x4206, "PTRACE_SEIZE")):
            if libc.ptrace(request, pid, None, None) == 0:
                libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
                out.append(result(f"{label} {pid_name}", True, "attached"))
            else:
                out.append(result(f"{label} {pid_name}", False, os.strerror(ctypes.get_errno())))
    if spec.get("strace"):
        proc = subprocess.run(
            [spec["strace"], "-p", str(spec["wrapper_pid"]), "-e", "trace=none"],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
        out.append(result("strace -p wrapper", proc.returncode == 0, proc.stderr.strip()))
    return out


def mount_attacks(spec: dict[str, Any]) -> list[Result]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    out = []
    data_dir, database = spec["dirs"]["data dir"], spec["database"]
    for flags, label in ((0, "umount"), (2, "umount MNT_DETACH")):
        if libc.umount2(data_dir.encode(), flags) == 0:
            out.append(result(label, os.path.exists(database), "unmounted"))
        else:
            out.append(result(label, False, os.strerror(ctypes.get_errno())))
    scripts = {
        "unshare -Urm; umount": f"umount -l {data_dir} && cat {database}",
        "unshare -Urm; bind the parent": (
            f"mkdir -p /tmp/kx-peek-$$ && mount --bind {os.path.dirname(data_dir)} /tmp/kx-peek-$$"
            f" && cat /tmp/kx-peek-$$/{os.path.basename(data_dir)}/{spec['db_name']}"
        ),
        "unshare -Urm; remount rw": f"mount -o remount,rw {data_dir} && ls -a {data_dir}",
        "unshare -Urm; new /proc": (
            f"mount -t proc proc /proc && cat /proc/{spec['daemon_pid']}/environ"
        ),
    }
    for label, script in scripts.items():
        proc = subprocess.run(
            ["unshare", "-Urm", "--", "sh", "-c", script],
            capture_output=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
        got = proc.returncode == 0 and bool(proc.stdout) and b"SQLite" in proc.stdout
        if label.endswith("new /proc"):
            got = proc.returncode == 0 and bool(proc.stdout)
        out.append(result(label, got, f"{proc.returncode} {proc.stderr.decode(errors='replace')}"))
    return out


def bus_attacks(spec: dict[str, Any]) -> list[Result]:
    out = []
    for address in spec["bus_addresses"]:
        kind, _, value = address.partition("=")
        path = value.split(",")[0]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        target = "\0" + path if kind == "unix:abstract" else path
        try:
            sock.connect(target)
            sock.sendall(b"\0AUTH EXTERNAL 30\r\n")
            answer = sock.recv(100)
            out.append(result(f"connect {address}", answer.startswith(b"OK"), repr(answer)))
        except OSError as exc:
            out.append(result(f"connect {address}", False, f"{type(exc).__name__}: {exc}"))
        finally:
            sock.close()
    if spec.get("keyring_lookup"):
        env = {**clean_env(), "DBUS_SESSION_BUS_ADDRESS": spec["bus_addresses"][0]}
        proc = subprocess.run(
            [sys.executable, "-c", spec["keyring_lookup"]],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        out.append(
            result("Secret Service lookup", "FOUND" in proc.stdout, proc.stdout + proc.stderr)
        )
    return out


# -- what must keep working ---------------------------------------------------------------


def http(url: str, data: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    body = None if data is None else urllib.parse.urlencode(data).encode()
    try:
        with urllib.request.urlopen(url, data=body, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def still_works(spec: dict[str, Any], env: dict[str, str]) -> list[Result]:
    """The agent's own things: ``escaped`` here means it WORKED (the test wants True)."""
    out = []
    try:
        with open("written-by-the-agent.txt", "w") as fh:
            fh.write("ok")
        out.append(result("cwd writable", True, os.getcwd()))
    except OSError as exc:
        out.append(result("cwd writable", False, str(exc)))
    out.append(read_attempt("rest of the file system readable", "/etc/passwd"))
    scratch = f"/tmp/kx-agent-scratch-{os.getpid()}"
    try:
        with open(scratch, "w") as fh:
            fh.write("ok")
        os.unlink(scratch)
        out.append(result("/tmp writable", True, scratch))
    except OSError as exc:
        out.append(result("/tmp writable", False, str(exc)))
    token, url = env.get("KONTEXT_TOKEN", ""), env.get("KONTEXT_URL", "")
    out.append(result("own token and issuer URL", bool(token and url), url))
    status, answer = http(f"{url}/introspect", {"token": token})
    out.append(result("own token is live (loopback)", bool(answer.get("active")), str(status)))
    status, answer = http(
        f"{url}/token",
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "scope": spec["narrow_scope"],
        },
    )
    out.append(
        result("RFC 8693 exchange of its own token", status == 200, json.dumps(answer)[:200])
    )
    child = subprocess.Popen(["sleep", "30"])
    try:
        os.kill(child.pid, signal.SIGTERM)
        out.append(result("signal its own child", child.wait(timeout=10) == -15, "SIGTERM"))
    finally:
        child.kill()
    if spec.get("strace"):
        proc = subprocess.run(
            [spec["strace"], "-f", "-o", "/dev/null", "true"], capture_output=True
        )
        out.append(result("ptrace its own child (strace)", proc.returncode == 0, str(proc.stderr)))
    return out


GROUPS: dict[str, Callable[[dict[str, Any]], list[Result]]] = {
    "raw": raw_attacks,
    "cli": cli_attacks,
    "files": file_attacks,
    "signals": signal_attacks,
    "ptrace": ptrace_attacks,
    "mounts": mount_attacks,
    "bus": bus_attacks,
    "consent": agent_consent.consent_attacks,
}


def attack(spec: dict[str, Any], out_path: str, original_env: dict[str, str]) -> None:
    results: list[Result] = []
    for group in spec["groups"]:
        if group == "works":
            results += still_works(spec, original_env)
        else:
            results += GROUPS[group](spec)
    tmp = f"{out_path}.{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump({"pid": os.getpid(), "results": results}, fh)
    os.replace(tmp, out_path)


def main() -> None:
    via, out_path, spec_path = sys.argv[1:4]
    with open(spec_path) as fh:
        spec = json.load(fh)
    if "wrapper_pid" not in spec:  # our parent, the wrapper, before we get away from it
        spec["wrapper_pid"] = os.getppid()
        spec_path = f"{out_path}.spec"
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
    original_env = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("KONTEXT_")]:
        del os.environ[name]
    me = [sys.executable, HERE]
    if via == "direct":
        attack(spec, out_path, original_env)
        return
    if via == "sh":
        os.execvp("sh", ["sh", "-c", 'exec "$0" "$1" direct "$2" "$3"', *me, out_path, spec_path])
    if via == "setsid":
        subprocess.run(["setsid", "-f", *me, "direct", out_path, spec_path], check=True)
    elif via == "doublefork":
        if os.fork() == 0:
            if os.fork() == 0:
                os.setsid()
                try:
                    attack(spec, out_path, original_env)
                finally:
                    os._exit(0)
            os._exit(0)
        os.wait()
    deadline = time.monotonic() + 600  # the orphan attacks while we are still here
    while not os.path.exists(out_path) and time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
