"""Instructions per request in the daemon, counted by callgrind: a cost the load cannot move.

::

    .venv/bin/python bench/instructions.py                # every figure below
    .venv/bin/python bench/instructions.py token gateway  # some of them

On a shared two-core machine, requests/s and even CPU seconds per request move
with whatever else runs (the scheduler, caches, frequency). The number of
instructions the daemon's user space executes per request does not, so this is
how bench/FINDINGS.md weighs a change: the same daemon as ``loopback_plane``
(fake GitHub, an agent with consent, a held credential) runs under
``valgrind --tool=callgrind``; for each figure wrk sends requests for a while, and
the instructions counted between zeroing and dumping the counters
(``callgrind_control``), less those of the same time idle, are divided by the
requests served. Kernel work (system calls, the loopback TCP stack) is not
counted: ``/proc`` CPU times in ``loopback_plane`` include it.

Figures: ``introspect``, ``token`` (RFC 8693 exchange, as ``loopback_plane``),
``gateway`` (GET through ``/gw/github``), ``expiry`` (the reaper ending the
credentials ``token`` minted: instructions per credential, once they are due),
``token-seq`` (``EXCHANGES`` exchanges from one keep-alive client, one after the
other: a fixed amount of work, each in a group commit of its own, so the figure
does not depend on how many requests a slower or faster build gathers per commit).
``--bin DIR`` measures another build (e.g. ``/work/main/.venv/bin``).
Needs valgrind (Debian package ``valgrind``) and wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import http.client
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import common
import loopback_plane as plane
import wrk
from common import AGENT, Daemon, fresh_home

FIGURES = ("introspect", "token", "gateway", "expiry", "token-seq")
SECONDS = 12.0  # of load per figure (the daemon runs ~50x slower under callgrind)
EXCHANGES = 300  # token-seq's fixed count


class CountedDaemon(Daemon):
    """kontextd under callgrind; its counters are zeroed and dumped on demand."""

    def __init__(self, home: Path, out: str, keep: str | None = None) -> None:
        super().__init__(home)
        self.out = out
        self.keep = keep  # a directory to keep each dump in (for callgrind_annotate)
        self.label = ""
        self.busiest = 0  # the last dump's busiest thread (the loopback loop under load)

    def start(self) -> float:
        began = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={self.out}/cg.%p",
                "--separate-threads=yes",
                f"--log-file={self.out}/valgrind.log",
                common.KONTEXTD,
                "--detach-stderr",
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        said = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        if "ready" not in said:
            raise RuntimeError(f"kontextd did not start under valgrind: {said.strip()}")
        return time.perf_counter() - began

    def zero(self) -> None:
        subprocess.run(["callgrind_control", "-z", str(self.pid)], check=True, capture_output=True)

    def dump(self) -> int:
        """Instructions since the last ``zero``, of all threads (one file each);
        ``busiest`` is set to the largest thread's."""
        before = set(glob.glob(f"{self.out}/cg.{self.pid}.*"))
        subprocess.run(["callgrind_control", "-d", str(self.pid)], check=True, capture_output=True)
        deadline = time.monotonic() + 120
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            new = set(glob.glob(f"{self.out}/cg.{self.pid}.*")) - before - set(counts)
            for path in sorted(new):
                text = Path(path).read_text(errors="replace")
                found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
                if found:
                    counts[path] = int(found.group(1))
                    if self.keep:
                        name = f"{self.label}.{path.rsplit('.', 1)[-1]}.callgrind"
                        os.replace(path, os.path.join(self.keep, name))
                    else:
                        os.unlink(path)
            if counts and not new:
                self.busiest = max(counts.values())
                return sum(counts.values())
            time.sleep(0.5)
        raise RuntimeError("callgrind did not dump")


def counted(daemon: CountedDaemon, seconds: float) -> tuple[int, int]:
    """(instructions of the load, of the same time idle) — the load already ran."""
    loaded = daemon.dump()
    daemon.zero()
    time.sleep(seconds)
    daemon.label += "-idle"
    idle = daemon.dump()
    return loaded, idle


def load(daemon: CountedDaemon, what: str, token: str, upstream: str) -> wrk.Load:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    base = f"http://127.0.0.1:{daemon.port}"
    if what == "introspect":
        body = urllib.parse.urlencode({"token": token})
        return wrk.run(f"{base}/introspect", 8, SECONDS, method="POST", body=body, headers=form)
    if what == "token":
        body = _exchange_body(token)
        return wrk.run(f"{base}/token", 8, SECONDS, method="POST", body=body, headers=form)
    return wrk.run(
        f"{base}/gw/github{plane.PR}", 8, SECONDS, headers={"Authorization": f"Bearer {token}"}
    )


def _exchange_body(token: str) -> str:
    return urllib.parse.urlencode(
        {
            "grant_type": plane.EXCHANGE,
            "subject_token_type": plane.ACCESS,
            "subject_token": token,
            "scope": "github:pulls:read",
        }
    )


def sequential(daemon: CountedDaemon, token: str, count: int) -> None:
    """``count`` exchanges from one keep-alive connection, each answered before the next."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=120)
    body = _exchange_body(token)
    try:
        for _ in range(count):
            conn.request("POST", "/token", body, plane.FORM)
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"/token answered {answer.status}")
    finally:
        conn.close()


def measure_sequential(daemon: CountedDaemon, token: str) -> str:
    sequential(daemon, token, 30)  # warm: caches, the statement cache
    daemon.label = "token-seq"
    daemon.zero()
    began = time.monotonic()
    sequential(daemon, token, EXCHANGES)
    loaded = daemon.dump()
    loop = daemon.busiest  # the loopback loop's thread alone: no other thread's ticks
    daemon.zero()
    time.sleep(time.monotonic() - began)
    daemon.label += "-idle"
    idle = daemon.dump()
    per = (loaded - idle) / EXCHANGES
    return (
        f"| token-seq (1 client) | {EXCHANGES} | {per:,.0f} (loop thread alone: "
        f"{loop / EXCHANGES:,.0f}) | {idle:,} |"
    )


def measure(daemon: CountedDaemon, what: str, token: str, upstream: str) -> str:
    load(daemon, what, token, upstream)  # warm: caches, pools, the statement cache
    daemon.label = what
    daemon.zero()
    began = time.monotonic()
    served = load(daemon, what, token, upstream)
    loaded, idle = counted(daemon, time.monotonic() - began)
    per = (loaded - idle) / max(1, served.requests)
    return f"| {what} | {served.requests} | {per:,.0f} | {idle:,} |"


def live(daemon: CountedDaemon) -> int:
    """Live credentials, read from the database beside the daemon (WAL lets us): asking
    the daemon would count its own instructions."""
    with contextlib.closing(
        sqlite3.connect(f"file:{daemon.home}/data/kontext.db?mode=ro", uri=True)
    ) as db:
        return int(
            db.execute("SELECT count(*) FROM credentials WHERE status = 'live'").fetchone()[0]
        )


def measure_expiry(daemon: CountedDaemon, due_at: float) -> str:
    """The credentials ``token`` minted expire 60 s later: count the reaper's work."""
    time.sleep(max(0.0, due_at - time.time()))
    daemon.label = "expiry"
    daemon.zero()
    began = time.monotonic()
    before = live(daemon)
    while live(daemon) > 1 and time.monotonic() < began + 900:  # the held credential stays
        time.sleep(2)
    ended = before - live(daemon)
    loaded, idle = counted(daemon, time.monotonic() - began)
    per = (loaded - idle) / max(1, ended)
    return f"| expiry (per credential ended) | {ended} | {per:,.0f} | {idle:,} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("figures", nargs="*", help=f"any of {', '.join(FIGURES)} (default: all)")
    parser.add_argument("--keep", metavar="DIR", help="keep each figure's callgrind dump here")
    parser.add_argument("--bin", metavar="DIR", help="the bin directory of the build to count")
    args = parser.parse_args(argv)
    if args.bin:
        common.KONTEXT, common.KONTEXTD = f"{args.bin}/kontext", f"{args.bin}/kontextd"
        plane.KONTEXT = common.KONTEXT
    figures = args.figures or list(FIGURES)
    if set(figures) - set(FIGURES):
        parser.error(f"figures are {', '.join(FIGURES)}")
    print("| figure | requests | instructions per request | idle, same time |")
    print("| --- | --- | --- | --- |")
    with (
        tempfile.TemporaryDirectory(prefix="kb-cg-") as out,
        fresh_home() as home,
        plane.fake_upstream() as upstream,
    ):
        daemon = CountedDaemon(home, out, args.keep)
        plane.connect_upstream(daemon, upstream)
        daemon.start()
        os.environ["KONTEXT_HOME"] = str(home)
        try:
            daemon.create_agent(AGENT)
            plane.store_upstream_key(daemon)
            lease, token = plane.hold_credential(daemon)
            due_at = 0.0
            for what in figures:
                if what == "token-seq":
                    print(measure_sequential(daemon, token), flush=True)
                    continue
                if what == "expiry":
                    if due_at:
                        print(measure_expiry(daemon, due_at), flush=True)
                    continue
                print(measure(daemon, what, token, upstream), flush=True)
                if what == "token":
                    due_at = time.time() + 62  # the exchange's default TTL is 60 s
            with contextlib.suppress(Exception):
                lease.close()  # type: ignore[attr-defined]
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
