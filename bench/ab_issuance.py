"""Before/after on control-socket issuance: two kontextd builds, interleaved in one run.

::

    .venv/bin/python bench/ab_issuance.py OTHER_CHECKOUT/.venv/bin [--rounds 3] [--seconds 3]

Each round starts a fresh daemon of each build in turn and runs figure 2's load
(a connection per credential: minted, stored, audited, then revoked and audited
when the connection closes) at 8 and 32 clients; the table gives each figure's
median over the rounds, and every round's figures for the spread.
"""

from __future__ import annotations

import argparse

import common
from issuance import _issue_worker

LEVELS = (8, 32)


def one_round(bin_dir: str, seconds: float) -> dict[str, float]:
    """Issuance figures for the build in ``bin_dir`` (a fresh daemon and home)."""
    common.KONTEXT, common.KONTEXTD = f"{bin_dir}/kontext", f"{bin_dir}/kontextd"
    out: dict[str, float] = {}
    with common.fresh_home() as home:
        daemon = common.Daemon(home)
        daemon.start()
        try:
            daemon.create_agent(common.AGENT)
            for clients in LEVELS:
                cpu = common.cpu_seconds(daemon.pid)
                rate, lat = common.run_load(
                    _issue_worker, clients, seconds, (daemon.socket, common.AGENT)
                )
                cpu = common.cpu_seconds(daemon.pid) - cpu
                out[f"credentials/s {clients}"] = rate
                out[f"p99 ms {clients}"] = common.percentile(lat, 99) * 1e3
                out[f"daemon CPU µs/credential {clients}"] = cpu / len(lat) * 1e6
                common.wait_for_leases_to_end(daemon)
        finally:
            daemon.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("before", help="the bin directory of the build to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    common.compare_builds(args.before, args.rounds, lambda b: one_round(b, args.seconds))


if __name__ == "__main__":
    main()
