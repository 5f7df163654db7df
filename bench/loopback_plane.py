"""7. The loopback plane (issue 18): /token, /introspect and the gateway under wrk.

- ``/token``: an RFC 8693 exchange that narrows an exec credential (what
  ``kontext.require()`` and MCP clients do per request), each token signed,
  stored and audited — against npm oidc-provider's ``/token`` (client_credentials,
  a JWT it neither stores nor audits), at the same client counts, in the same run.
- ``/introspect`` of a live credential (RFC 7662), against the target.
- The gateway: the same ``GET`` of the fake GitHub (tests/upstream) directly and
  through ``/gw/github`` with a kontext credential, at 8 and 32 clients; the added
  p50 of one sequential keep-alive client; a 64 MiB streamed download.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import wrk
from common import AGENT, HERE, KONTEXT, Daemon, Plan, Section, Target, ms, nothing
from issuance import OIDC_CLIENT, ThirdParty, third_party_server

sys.path.insert(0, str(HERE.parent))  # tests.upstream: the fake GitHub
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PR = "/repos/acme/backend/pulls/42"


@dataclass
class PlaneFigures:
    """What the targets need: rates and latencies by (what, clients)."""

    loads: dict[tuple[str, int], wrk.Load] = field(default_factory=dict)
    added_p50: float | None = None
    stream_ratio: float | None = None


@contextlib.contextmanager
def fake_upstream() -> Iterator[str]:
    """The fake GitHub in a process of its own (its URL), until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.upstream.fake_github"],
        cwd=HERE.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its broken pipes when wrk hangs up at the end
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def connect_upstream(daemon: Daemon, upstream: str) -> None:
    """Point GitHub at the fake (config.toml, before the daemon starts) — see ``main``."""
    config = daemon.home / "config"
    config.mkdir(mode=0o700, exist_ok=True)
    (config / "config.toml").write_text(f'[integrations.github]\nbase_url = "{upstream}"\n')


def store_upstream_key(daemon: Daemon) -> None:
    from tests.upstream.fake_github import API_KEY

    subprocess.run(
        [KONTEXT, "integration", "connect", "github", "--secret-stdin"],
        input=API_KEY + "\n",
        env=daemon.env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _row(section: Section, what: str, clients: int, load: wrk.Load, baseline: str) -> None:
    rate = f"{load.rate:,.0f}" + (f" ({load.errors} errors)" if load.errors else "")
    section.rows.append((what, str(clients), rate, ms(load.p50), ms(load.p99), baseline))


def bench_token(
    daemon: Daemon, plan: Plan, token: str, other: ThirdParty | None, figures: PlaneFigures
) -> Section:
    section = Section(
        "7a. /token: RFC 8693 exchange vs. oidc-provider (wrk, keep-alive clients)",
        ("server", "clients", "tokens/s", "p50", "p99", "vs. oidc-provider"),
    )
    body = urllib.parse.urlencode(
        {
            "grant_type": EXCHANGE,
            "subject_token_type": ACCESS,
            "subject_token": token,
            "scope": "github:pulls:read",
        }
    )
    import base64

    basic = base64.b64encode(":".join(OIDC_CLIENT).encode()).decode()
    theirs_body = "grant_type=client_credentials&scope=pulls%3Aread"
    for clients in plan.plane_clients:
        ours = wrk.run(
            f"http://127.0.0.1:{daemon.port}/token",
            clients,
            plan.plane_seconds,
            method="POST",
            body=body,
            headers=FORM,
        )
        figures.loads[("token", clients)] = ours
        theirs = None
        if other is not None:
            theirs = wrk.run(
                f"http://127.0.0.1:{other.port}/token",
                clients,
                plan.plane_seconds,
                method="POST",
                body=theirs_body,
                headers={**FORM, "Authorization": f"Basic {basic}"},
            )
            figures.loads[("oidc-provider", clients)] = theirs
        ratio = f"{ours.rate / theirs.rate:.2f}x" if theirs else "-"
        _row(section, "kontextd /token (exchange, stored + audited)", clients, ours, ratio)
        if theirs is not None:
            _row(section, f"{other.version} /token (client_credentials)", clients, theirs, "1.00x")
    section.notes.append(
        "Load generator: wrk 4 (one thread, keep-alive). kontextd verifies the subject token "
        "(signature cached, expiry and revocation checked), signs an ES256 JWT, stores its "
        "row and audits it; oidc-provider signs an ES256 JWT and keeps nothing."
    )
    return section


def bench_introspect(daemon: Daemon, plan: Plan, token: str, figures: PlaneFigures) -> Section:
    section = Section(
        "7b. /introspect of a live credential (wrk, keep-alive clients)",
        ("endpoint", "clients", "requests/s", "p50", "p99", "target"),
    )
    body = urllib.parse.urlencode({"token": token})
    for clients in (1, 8):
        load = wrk.run(
            f"http://127.0.0.1:{daemon.port}/introspect",
            clients,
            plan.plane_seconds,
            method="POST",
            body=body,
            headers=FORM,
        )
        figures.loads[("introspect", clients)] = load
        _row(section, "POST /introspect", clients, load, ">= 8,000/s at 8" if clients == 8 else "-")
    return section


def bench_gateway(
    daemon: Daemon, plan: Plan, upstream: str, token: str, figures: PlaneFigures
) -> Section:
    """Direct against through ``/gw/github``, in paired rounds after a warm-up of each.

    Why the warm-up and the rounds: a single first run through the gateway also
    timed the gateway's upstream pool being filled (connections to the fake
    GitHub opened under load) and a cold first 64 MiB download; in five rounds
    on a quiet machine the first ratio was the outlier each time (0.69 then
    0.75-0.81 at 8 clients; 0.79 then 0.93-0.99 streamed). Each round times
    direct and gateway back to back, and the round with the median ratio is the
    one shown and judged."""
    from gateway_bench import latencies, stream_rate

    from tests.upstream.fake_github import API_KEY

    section = Section(
        "7c. Gateway vs. direct calls to the same upstream (wrk, keep-alive clients)",
        ("path", "clients", "calls/s", "p50", "p99", "vs. direct"),
    )
    gateway = f"http://127.0.0.1:{daemon.port}/gw/github"
    key = {"Authorization": f"Bearer {API_KEY}"}
    ours = {"Authorization": f"Bearer {token}"}
    for clients in (8, 32):
        wrk.run(upstream + PR, clients, 1.0, headers=key)  # warm-up, not counted
        wrk.run(gateway + PR, clients, 1.0, headers=ours)
        rounds = []
        for _ in range(plan.plane_rounds):
            direct = wrk.run(upstream + PR, clients, plan.plane_seconds, headers=key)
            through = wrk.run(gateway + PR, clients, plan.plane_seconds, headers=ours)
            rounds.append((through.rate / direct.rate, direct, through))
        ratio, direct, through = _median_round(rounds)
        figures.loads[("direct", clients)] = direct
        figures.loads[("gateway", clients)] = through
        _row(section, "direct (fake GitHub)", clients, direct, "1.00x")
        _row(section, "through /gw/github", clients, through, _ratios(ratio, rounds))
    calls = plan.plane_sequential
    d_lat = latencies(upstream, key, calls)
    g_lat = latencies(gateway, ours, calls)
    figures.added_p50 = (statistics.median(g_lat) - statistics.median(d_lat)) / 1000
    section.rows.append(
        (
            f"added p50, one sequential client ({calls} calls)",
            "1",
            "-",
            ms(figures.added_p50),
            "-",
            f"direct p50 {statistics.median(d_lat):.2f} ms",
        )
    )
    mib = plan.plane_mib
    stream_rate(upstream, key, 4)  # warm-up, not counted
    stream_rate(gateway, ours, 4)
    streams = []
    for _ in range(plan.plane_rounds):
        d_rate = stream_rate(upstream, key, mib)
        g_rate = stream_rate(gateway, ours, mib)
        streams.append((g_rate / d_rate, d_rate, g_rate))
    ratio, d_rate, g_rate = _median_round(streams)
    figures.stream_ratio = ratio
    section.rows.append(
        (
            f"{mib} MiB streamed download",
            "1",
            f"{g_rate:,.0f} MiB/s",
            "-",
            "-",
            f"{_ratios(ratio, streams)} (direct {d_rate:,.0f} MiB/s)",
        )
    )
    section.notes.append(
        "Each gateway call: token signature (cached) and revocation check, route and scope "
        "match, the upstream call on the gateway's pooled llhttp client, and one audit append. "
        f"After a warm-up of each path (1 s of wrk, a 4 MiB download: not counted), "
        f"{plan.plane_rounds} paired rounds, direct then gateway back to back; shown is the "
        "round with the median ratio, the others' ratios in brackets."
    )
    return section


def _median_round(rounds: list[Any]) -> Any:
    """The round (ratio, ...) whose ratio is the median (the lower middle of an even count)."""
    ordered = sorted(rounds, key=lambda r: r[0])
    return ordered[(len(ordered) - 1) // 2]


def _ratios(ratio: float, rounds: list[Any]) -> str:
    if len(rounds) == 1:
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x (rounds: {', '.join(f'{r[0]:.2f}' for r in rounds)})"


def hold_credential(daemon: Daemon) -> tuple[object, str]:
    """A credential for acme/backend held open (as ``kontext exec`` holds it)."""
    lease = daemon.connect()
    body = {"agent": AGENT, "target": "acme/backend", "ttl": 3600}
    token = str(lease.call("POST", "/v1/credentials", body)["token"])
    return lease, token


def bench_all(daemon: Daemon, plan: Plan, upstream: str) -> tuple[list[Section], PlaneFigures]:
    """The issue-18 figures under wrk; skipped (with a note) where wrk is missing."""
    figures = PlaneFigures()
    if not wrk.available():
        note = Section("7. The loopback plane", ("figure",))
        note.notes.append("not measured: wrk is not installed (Debian package 'wrk')")
        return [note], figures
    lease, token = hold_credential(daemon)
    try:
        # The gateway and /introspect before /token: each exchange mints a 60 s token,
        # and a minute after 7a the daemon expires them (one audit event each, ~3,700/s
        # here) while serving: measured then, the gateway gave 0.64x of direct in all
        # three rounds (bench/FINDINGS.md, sixth pass, "The expiry wave").
        gateway = bench_gateway(daemon, plan, upstream, token, figures)
        introspect = bench_introspect(daemon, plan, token, figures)
        with third_party_server() if plan.third_party else nothing() as other:
            sections = [bench_token(daemon, plan, token, other, figures), introspect, gateway]
        # The sections after this one (idle connections, SSE, the dashboard) start
        # once /token's tokens have expired and been audited.
        wait_for_expiry(daemon, keep=1)
    finally:
        lease.close()  # type: ignore[attr-defined]
    return sections, figures


def wait_for_expiry(daemon: Daemon, keep: int, timeout: float = 150.0) -> None:
    """Until at most ``keep`` credentials are live (the others expired and audited)."""
    deadline = time.monotonic() + timeout
    while daemon.call("GET", "/v1/status")["live_credentials"] > keep:
        if time.monotonic() > deadline:
            raise RuntimeError(f"credentials still live after {timeout:.0f} s")
        time.sleep(0.5)


def targets(plan: Plan, figures: PlaneFigures) -> list[Target]:
    """Issue 18's targets, each against its baseline from this run."""
    loads = figures.loads
    out: list[Target] = []
    for clients in plan.plane_clients:
        ours, theirs = loads.get(("token", clients)), loads.get(("oidc-provider", clients))
        out.append(
            Target(
                f"/token exchange vs. oidc-provider, {clients} clients",
                "ahead in the same run",
                f"{ours.rate:,.0f}/s vs. {theirs.rate:,.0f}/s" if ours and theirs else "-",
                ours.rate > theirs.rate if ours and theirs else None,
            )
        )
    ours, theirs = loads.get(("token", 32)), loads.get(("oidc-provider", 32))
    out.append(
        Target(
            "/token p99 at 32 clients",
            "below oidc-provider's",
            f"{ms(ours.p99)} vs. {ms(theirs.p99)}" if ours and theirs else "-",
            ours.p99 < theirs.p99 if ours and theirs else None,
        )
    )
    intro = loads.get(("introspect", 8))
    out.append(
        Target(
            "/introspect at 8 clients",
            ">= 8,000/s",
            f"{intro.rate:,.0f}/s" if intro else "-",
            intro.rate >= 8000 if intro else None,
        )
    )
    for clients in (8, 32):
        direct, through = loads.get(("direct", clients)), loads.get(("gateway", clients))
        out.append(
            Target(
                f"gateway calls/s at {clients} clients",
                ">= 75% of direct",
                f"{through.rate / direct.rate:.0%}" if direct and through else "-",
                through.rate >= 0.75 * direct.rate if direct and through else None,
            )
        )
    added = figures.added_p50
    out.append(
        Target(
            "gateway added p50, sequential",
            "<= 0.3 ms",
            ms(added) if added is not None else "-",
            added <= 0.0003 if added is not None else None,
        )
    )
    ratio = figures.stream_ratio
    out.append(
        Target(
            f"gateway {plan.plane_mib} MiB streamed body",
            ">= 90% of direct",
            f"{ratio:.0%}" if ratio is not None else "-",
            ratio >= 0.9 if ratio is not None else None,
        )
    )
    return out


def main() -> None:
    """Only figures 7 and 8, with their targets: ``python bench/loopback_plane.py [--quick]``."""
    import argparse
    import os

    import connections
    from common import FULL, QUICK, fresh_home

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--quick", action="store_true")
    plan = QUICK if parser.parse_args().quick else FULL
    with fresh_home() as home, fake_upstream() as upstream:
        daemon = Daemon(home)
        connect_upstream(daemon, upstream)
        daemon.start()
        os.environ["KONTEXT_HOME"] = str(home)
        try:
            daemon.create_agent(AGENT)
            store_upstream_key(daemon)
            sections, figures = bench_all(daemon, plan, upstream)
            conn, idle_mb, idle_threads = connections.bench_idle(daemon, plan.idle_connections)
            sse_mb, sse_threads = connections.bench_sse(conn)
        finally:
            daemon.stop()
    table = Section("Targets (issue 18)", ("target", "goal", "measured", "verdict"))
    table.rows += [t.row() for t in targets(plan, figures)]
    table.rows.append(
        (
            f"{plan.idle_connections:,} idle connections / {connections.STREAMS} SSE streams",
            "< 50 MB, no thread each",
            f"{idle_mb:.1f} MB, {idle_threads} threads / {sse_mb:.1f} MB, {sse_threads} threads",
            "met"
            if max(idle_mb, sse_mb) < 50 and max(idle_threads, sse_threads) <= 1
            else "**missed**",
        )
    )
    print("\n".join(s.markdown() for s in [table, *sections, conn]))


if __name__ == "__main__":
    main()
