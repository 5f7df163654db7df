"""Before/after on the loopback plane: two kontextd builds, interleaved in one run.

::

    .venv/bin/python bench/ab_plane.py /work/main/.venv/bin [--rounds 3] [--seconds 3]
        [--token-only]

On a shared two-core machine a figure moves with whatever else runs, so a change
is weighed by running the build before it (the ``bin`` directory of another
checkout's venv, e.g. main's) and this one alternately, round by round, against
the same fake GitHub and npm oidc-provider: ``/token`` (RFC 8693 exchange) at 1,
8, 32 and 128 clients, with the daemon's own CPU time per exchange (``/proc``,
user and system), the gateway and the direct call at 8 and 32 clients, and the
added p50 of one sequential client (``--token-only`` leaves the gateway out).
Each round starts each daemon afresh. The table gives each figure's median over
the rounds; the ratios (to oidc-provider, to direct) are of figures from the
same round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import urllib.parse

import common
import loopback_plane as plane
import wrk
from gateway_bench import latencies
from issuance import OIDC_CLIENT, third_party_server

from tests.upstream.fake_github import API_KEY

TOKEN_CLIENTS = (1, 8, 32, 128)


def one_round(
    bin_dir: str, upstream: str, other_port: int, seconds: float, token_only: bool = False
) -> dict[str, float]:
    """Every figure for the build in ``bin_dir`` (a fresh daemon and home)."""
    common.KONTEXT, common.KONTEXTD = f"{bin_dir}/kontext", f"{bin_dir}/kontextd"
    plane.KONTEXT = common.KONTEXT
    out: dict[str, float] = {}
    with common.fresh_home() as home:
        daemon = common.Daemon(home)
        plane.connect_upstream(daemon, upstream)
        daemon.start()
        os.environ["KONTEXT_HOME"] = str(home)
        try:
            daemon.create_agent(common.AGENT)
            plane.store_upstream_key(daemon)
            lease, token = plane.hold_credential(daemon)
            body = urllib.parse.urlencode(
                {
                    "grant_type": plane.EXCHANGE,
                    "subject_token_type": plane.ACCESS,
                    "subject_token": token,
                    "scope": "github:pulls:read",
                }
            )
            base = f"http://127.0.0.1:{daemon.port}"
            basic = _basic()
            for clients in TOKEN_CLIENTS:
                cpu = common.cpu_seconds(daemon.pid)
                ours = wrk.run(
                    f"{base}/token", clients, seconds, method="POST", body=body, headers=plane.FORM
                )
                cpu = common.cpu_seconds(daemon.pid) - cpu
                theirs = wrk.run(
                    f"http://127.0.0.1:{other_port}/token",
                    clients,
                    seconds,
                    method="POST",
                    body="grant_type=client_credentials&scope=pulls%3Aread",
                    headers={**plane.FORM, "Authorization": f"Basic {basic}"},
                )
                out[f"token/oidc-provider {clients}"] = ours.rate / theirs.rate
                out[f"token/s {clients}"] = ours.rate
                out[f"token daemon CPU µs/exchange {clients}"] = cpu / ours.requests * 1e6
                out[f"token p99 ms {clients}"] = ours.p99 * 1e3
                out[f"oidc-provider p99 ms {clients}"] = theirs.p99 * 1e3
            if token_only:
                lease.close()  # type: ignore[attr-defined]
                return out
            gw = {"Authorization": f"Bearer {token}"}
            direct_auth = {"Authorization": f"Bearer {API_KEY}"}
            for clients in (8, 32):
                direct = wrk.run(upstream + plane.PR, clients, seconds, headers=direct_auth)
                through = wrk.run(f"{base}/gw/github{plane.PR}", clients, seconds, headers=gw)
                out[f"gateway/direct {clients}"] = through.rate / direct.rate
                out[f"gateway calls/s {clients}"] = through.rate
            d_lat = latencies(upstream, direct_auth, 2000)
            g_lat = latencies(f"{base}/gw/github", gw, 2000)
            out["gateway added p50 ms"] = statistics.median(g_lat) - statistics.median(d_lat)
            lease.close()  # type: ignore[attr-defined]
        finally:
            daemon.stop()
    return out


def _basic() -> str:
    import base64

    return base64.b64encode(":".join(OIDC_CLIENT).encode()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("before", help="the bin directory of the build to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--token-only", action="store_true", help="leave the gateway out")
    args = parser.parse_args()
    with plane.fake_upstream() as upstream, third_party_server() as other:
        assert other is not None, "npm oidc-provider is needed (tests/oidc)"
        common.compare_builds(
            args.before,
            args.rounds,
            lambda bin_dir: one_round(bin_dir, upstream, other.port, args.seconds, args.token_only),
        )


if __name__ == "__main__":
    main()
