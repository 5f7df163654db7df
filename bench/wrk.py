"""Load with wrk (Debian's ``wrk`` 4.x): keep-alive HTTP/1.1 clients written in C.

wrk drives the loopback figures of issue 18 because the load generator must not
be the bottleneck: a Python client tops out near the rates measured here, and
wrk's event loop on one thread does not. Each run gets a small Lua script that
sets the method, body and headers, and prints wrk's summary as one JSON line
(requests, errors, latency percentiles in microseconds) when done.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

SCRIPT = """
wrk.method = {method}
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout + summary.errors.status
  io.write(string.format(
    '{{"requests":%d,"seconds":%f,"errors":%d,"p50":%d,"p99":%d}}\\n',
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Load:
    """One wrk run: requests/s and latency percentiles (seconds); ``errors`` counts
    socket errors, timeouts (10 s) and non-2xx/3xx answers (more than a tenth fails
    the run)."""

    rate: float
    p50: float
    p99: float
    requests: int
    errors: int


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal for our bodies


def run(
    url: str,
    clients: int,
    seconds: float,
    *,
    method: str = "GET",
    body: str = "",
    headers: dict[str, str] | None = None,
) -> Load:
    """``clients`` keep-alive connections on one wrk thread for ``seconds``."""
    lines = "\n".join(f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in (headers or {}).items())
    script = SCRIPT.format(method=_lua(method), body=_lua(body), headers=lines)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="kb-wrk-") as fh:
        fh.write(script)
        fh.flush()
        duration = f"-d{max(1, round(seconds))}s"
        proc = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", duration, "--timeout", "10s", "-s", fh.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr.strip()[-300:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    if summary["requests"] and summary["errors"] > summary["requests"] // 10:
        raise RuntimeError(f"wrk saw {summary['errors']} errors or non-2xx answers on {url}")
    return Load(
        rate=summary["requests"] / summary["seconds"],
        p50=summary["p50"] / 1e6,
        p99=summary["p99"] / 1e6,
        requests=summary["requests"],
        errors=summary["errors"],
    )
