"""kontext benchmarks: every figure next to a baseline measured in the same run.

::

    .venv/bin/python bench/run.py            # full run (10-17 min); writes bench/RESULTS.md
    .venv/bin/python bench/run.py --quick    # smoke run for CI (~20 s); prints, writes nothing

It starts a real kontextd in a throw-away KONTEXT_HOME under /tmp (a Unix socket
path must fit in 108 bytes) and measures, with the kontext and python of the
interpreter running this script:

1. exec overhead: ``kontext exec --agent a -- true``, confined and with
   ``--no-confine``, against ``true`` and ``python3 -c pass`` (daemon warm),
   interleaved run by run (bench/confine_bench.py breaks confinement's cost down).
2. Issuance: credentials/s and p50/p99 latency at 1, 8, 32 and 128 concurrent
   clients; a client connects to the Unix socket, POSTs /v1/credentials and
   closes the connection (which ends the lease, so the daemon revokes it). The
   clients run in several processes so the benchmark's own GIL is not the limit.
3. Introspection and /jwks.json requests/s on the loopback port, with
   keep-alive connections (http.client), against a trivial HTTP server built on
   the same standard-library server class, as the baseline.
4. Revocation latency: ``kontext revoke agent:X`` returning -> introspection
   says inactive; a SIGKILLed ``kontext exec`` wrapper -> inactive.
5. Daemon cold start (process start -> control socket answering), idle RSS and
   RSS after the load above (VmRSS from /proc/PID/status).
6. The audit trail at 1,000,000 events.
7. The loopback plane under wrk: /token (RFC 8693 exchange) against npm
   oidc-provider's /token, /introspect, and the gateway against direct calls to
   the same fake upstream.
8. 2,000 idle loopback connections and 20 Server-Sent-Event streams: memory and
   threads.
9. The dashboard: exec and issuance with no dashboard open against 20 open ones
   (paired rounds), a new event's way to an open stream, streams' idle cost.
10. The library (section 2b): ``kontext.require`` per second, p50/p99 and daemon CPU per call
    at 1, 8 and 32 callers in an exec'd agent (shown beside exec and issuance).

This file is the runner: one module per figure (``exec_overhead``, ``issuance``,
``loopback_http``, ``revocation``, ``audit_trail``, ``startup``, ``loopback_plane``,
``connections``, ``dashboard_bench``, ``library_bench``) and the shared parts in ``common``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import connections
import library_bench
import loopback_plane as plane
from audit_trail import bench_audit
from common import AGENT, FULL, HERE, QUICK, Daemon, Section, Target, fresh_home, ms, percentile
from dashboard_bench import bench_dashboard
from exec_overhead import bench_exec
from issuance import bench_issuance
from loopback_http import bench_http
from revocation import bench_revoke
from startup import bench_cold_start, machine, python_floor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer runs, no RESULTS.md")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    began = time.perf_counter()
    sections: list[Section] = []
    targets: list[Target] = []

    print("cold start ...", file=sys.stderr)
    first, idle_rss, again = bench_cold_start(plan)
    floor = python_floor()
    with fresh_home() as home, plane.fake_upstream() as upstream:
        daemon = Daemon(home)
        plane.connect_upstream(daemon, upstream)
        daemon.start()
        os.environ["KONTEXT_HOME"] = str(home)
        try:
            daemon.create_agent(AGENT)
            plane.store_upstream_key(daemon)
            warm_rss = daemon.rss_mb()
            print("exec ...", file=sys.stderr)
            exec_section, exec_times = bench_exec(daemon, plan)
            print("issuance ...", file=sys.stderr)
            issue_section, issued = bench_issuance(daemon, plan)
            print("loopback http ...", file=sys.stderr)
            http_section, _ = bench_http(daemon, plan)
            print("revocation ...", file=sys.stderr)
            revoke_section, after_revoke, after_kill = bench_revoke(daemon, plan)
            loaded_rss = daemon.rss_mb()
            print("loopback plane (wrk) ...", file=sys.stderr)
            plane_sections, figures = plane.bench_all(daemon, plan, upstream)
            print("connections ...", file=sys.stderr)
            conn_section, idle_mb, idle_threads = connections.bench_idle(
                daemon, plan.idle_connections
            )
            sse_mb, sse_threads = connections.bench_sse(conn_section)
            print("dashboard ...", file=sys.stderr)
            dash_section, dash_targets = bench_dashboard(daemon, plan)
        finally:
            daemon.stop()
    print("library ...", file=sys.stderr)
    library_section, library_targets = library_bench.bench_library(plan)
    print("audit ...", file=sys.stderr)
    audit_section, audit = bench_audit(plan)
    sections += [exec_section, issue_section, library_section, http_section, revoke_section]
    start_section = Section(
        "5. Daemon start and memory",
        ("figure", "runs", "median", "p95", "baseline"),
    )
    start_section.rows += [
        (
            "cold start, new KONTEXT_HOME (creates key and store)",
            str(len(first)),
            ms(statistics.median(first)),
            ms(percentile(first, 95)),
            f"python3 -c pass: {ms(floor)}",
        ),
        (
            "cold start, existing KONTEXT_HOME",
            str(len(again)),
            ms(statistics.median(again)),
            ms(percentile(again, 95)),
            f"python3 -c pass: {ms(floor)}",
        ),
        ("idle RSS after start", str(len(first)), f"{idle_rss:.1f} MB", "-", "-"),
        ("RSS with agents, before load", "1", f"{warm_rss:.1f} MB", "-", "-"),
        ("RSS after the load above", "1", f"{loaded_rss:.1f} MB", "-", "-"),
    ]
    sections += [start_section, audit_section, *plane_sections, conn_section, dash_section]

    exec_median = statistics.median(exec_times["`kontext exec --agent a -- true`"])
    python_median = statistics.median(exec_times["`python3 -c pass`"])
    regular = exec_times.get("`kontext exec --agent a -- true`, regular install")
    regular_python = exec_times.get("`python3 -c pass`, regular install's venv")
    rate32, lat32 = issued.get(("kontextd (Unix socket)", 32), (0.0, [0.0]))
    other32 = issued.get(("oidc-provider /token (loopback TCP)", 32))
    targets += [
        Target(
            "exec overhead, confined (this venv)",
            "median <= 2x `python3 -c pass`",
            f"{exec_median / python_median:.2f}x",
            exec_median <= 2 * python_median,
        ),
        Target(
            "exec overhead, confined (regular install, from a wheel)",
            "median <= 2x `python3 -c pass`",
            f"{statistics.median(regular) / statistics.median(regular_python):.2f}x"
            if regular and regular_python
            else "-",
            statistics.median(regular) <= 2 * statistics.median(regular_python)
            if regular and regular_python
            else None,
        ),
        Target(
            "issuance at 32 clients", ">= 2,000 credentials/s", f"{rate32:,.0f}/s", rate32 >= 2000
        ),
        Target(
            "issuance p99 at 32 clients",
            "<= 25 ms",
            ms(percentile(lat32, 99)),
            percentile(lat32, 99) <= 0.025,
        ),
        Target(
            "issuance vs. a third-party OAuth server",
            "ahead in the same run (32 clients)",
            f"{rate32 / other32[0]:.2f}x oidc-provider ({other32[0]:,.0f}/s)" if other32 else "-",
            rate32 > other32[0] if other32 else None,
        ),
        Target(
            "revoke -> inactive",
            "<= 10 ms after revoke returns",
            ms(max(after_revoke)) + " (worst)",
            max(after_revoke) <= 0.010,
        ),
        Target(
            "SIGKILLed wrapper -> inactive",
            "<= 1 s",
            ms(max(after_kill)) + " (worst)",
            max(after_kill) <= 1.0,
        ),
        Target(
            f"audit verify at {plan.audit_events:,} events",
            "<= 10 s",
            f"{statistics.median(audit.verify):.2f} s (median)",
            statistics.median(audit.verify) <= 10,
        ),
        Target(
            f"audit tail -n 100 at {plan.audit_events:,} events",
            "<= 100 ms",
            ms(audit.tail) + " (median, the slower of pipe and terminal)",
            audit.tail <= 0.1,
        ),
        Target("daemon idle RSS", "<= 60 MB", f"{idle_rss:.1f} MB", idle_rss <= 60),
        *plane.targets(plan, figures),
        *library_targets,
        Target(
            f"{plan.idle_connections:,} idle loopback connections",
            "< 50 MB daemon memory, no thread each",
            f"{idle_mb:.1f} MB, {idle_threads} threads added",
            idle_mb < 50 and idle_threads <= 1,
        ),
        Target(
            f"{connections.STREAMS} Server-Sent-Event streams",
            "< 50 MB, no thread each",
            f"{sse_mb:.1f} MB, {sse_threads} threads added",
            sse_mb < 50 and sse_threads <= 1,
        ),
    ]
    targets += dash_targets
    target_section = Section(
        "Targets (issues 6, 13, 15 and 18)", ("target", "goal", "measured", "verdict")
    )
    target_section.rows += [t.row() for t in targets]

    report = "\n".join(s.markdown() for s in [target_section, *sections])
    print(report)
    print(f"(took {time.perf_counter() - began:.0f} s)", file=sys.stderr)
    if not args.quick:
        write_results(args.out, report)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def write_results(path: Path, report: str) -> None:
    """RESULTS.md: machine, figures, targets, and the hand-written findings (FINDINGS.md)."""
    findings = HERE / "FINDINGS.md"
    parts = [
        "# kontext benchmark results",
        "",
        "Generated by `bench/run.py` (do not edit; findings live in `bench/FINDINGS.md`).",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Results",
        "",
        report,
    ]
    if findings.exists():
        parts += ["## Findings", "", findings.read_text().strip(), ""]
    # The slower, separate benchmarks keep their own last results; fold them in so
    # RESULTS.md is the one place to read every figure.
    # (The audit trail is measured by this script now; bench/AUDIT_RESULTS.md is the
    # standalone audit_bench.py's own record.)
    for name, script in (("GATEWAY_RESULTS.md", "gateway_bench.py"),):
        extra = HERE / name
        if extra.exists():
            body = extra.read_text().strip().replace("\n# ", "\n### ").removeprefix("# ")
            parts += [f"## {body}", "", f"(From `bench/{name}`, written by `bench/{script}`.)", ""]
    path.write_text("\n".join(parts))


if __name__ == "__main__":
    sys.exit(main())
