"""``kontext audit prune``: never younger events than ``[audit] prune_min_age`` (30 days by
default), never from inside an agent, and a signed anchor that records the pruned range
and who asked."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time

import jwt
from conftest import KONTEXT, Kontext, one_line_error
from test_audit_verify import db


def allow_young(k: Kontext) -> None:
    (k.home / "config").mkdir(parents=True, exist_ok=True)
    (k.home / "config" / "config.toml").write_text('[audit]\nprune_min_age = "0s"\n')


def count(k: Kontext) -> int:
    return int(db(k).execute("SELECT COUNT(*) FROM audit_events").fetchone()[0])


def test_events_younger_than_thirty_days_are_kept(fresh_kx: Kontext) -> None:
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    before = count(fresh_kx)
    line = one_line_error(fresh_kx.run("audit", "prune", "--before", "1d"), 2)
    assert "events younger than 30d are kept ([audit] prune_min_age)" in line
    assert "use --before " in line and "or earlier" in line
    assert count(fresh_kx) == before  # nothing changed (and nothing audited)
    # Old enough: nothing to prune in a fresh log, and that is fine.
    assert fresh_kx.ok("audit", "prune", "--before", "31d").stdout.startswith("nothing is older")


def test_an_agent_cannot_prune_the_log(fresh_kx: Kontext) -> None:
    """An agent erased its own credential.issued through POST /v1/audit/prune (issue 17.3).
    Confined, it cannot reach the daemon at all; unconfined (``--no-confine``), the
    daemon recognises it from its process tree and refuses — nothing removed."""
    allow_young(fresh_kx)
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    before = count(fresh_kx)
    cutoff = str(time.time() + 1)
    iso = dt.datetime.fromtimestamp(float(cutoff)).isoformat()
    prune = [KONTEXT, "audit", "prune", "--before", iso]
    confined = fresh_kx.run("exec", "--agent", name, "--", *prune)
    assert confined.returncode == 16, confined.stderr
    assert f"inside agent:{name}'s confinement" in confined.stderr
    proc = fresh_kx.run("exec", "--agent", name, "--no-confine", "--", *prune)
    assert proc.returncode == 16, proc.stderr
    assert f"refused POST /v1/audit/prune: it comes from inside agent:{name} (pid " in proc.stderr
    # The same through the control socket directly, from a grandchild of the exec.
    script = (
        "import httpx,json,os,sys;"
        "t=httpx.HTTPTransport(uds=os.environ['KONTEXT_HOME']+'/run/control.sock');"
        "c=httpx.Client(transport=t,base_url='http://kontextd');"
        "r=c.post('/v1/audit/prune',json={'before':float(sys.argv[1])});"
        "print(r.status_code, r.json()['error']['message'])"
    )
    shell = f'{sys.executable} -c "{script}" {cutoff}'
    direct = fresh_kx.ok("exec", "--agent", name, "--no-confine", "--", "sh", "-c", shell)
    assert direct.stdout.startswith("403 refused POST /v1/audit/prune: it comes from inside agent")
    assert count(fresh_kx) > before  # only what the refusals and the execs added


def test_the_anchor_records_the_range_and_who_asked(fresh_kx: Kontext) -> None:
    allow_young(fresh_kx)
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    time.sleep(0.05)
    cutoff = dt.datetime.now().isoformat()
    time.sleep(0.05)
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    first = int(db(fresh_kx).execute("SELECT MIN(id) FROM audit_events").fetchone()[0])
    out = fresh_kx.ok("audit", "prune", "--before", cutoff).stdout
    assert out.startswith("pruned ")
    [pruned] = [e for e in fresh_kx.audit() if e["event"] == "audit.pruned"]
    asked = pruned["requested_by"]
    assert asked["uid"] == os.getuid() and isinstance(asked["pid"], int) and "agent" not in asked
    jws = (
        db(fresh_kx)
        .execute("SELECT jws FROM audit_checkpoints WHERE kind = 'anchor'")
        .fetchone()[0]
    )
    claims = jwt.decode(jws, options={"verify_signature": False})  # verify checks the signature
    assert claims["pruned"] == {"first": first, "through": pruned["through"]}
    assert claims["requested_by"] == asked
    tail = fresh_kx.ok("audit", "tail", "--event", "audit.pruned").stdout
    assert f"events {first}-{pruned['through']} ({pruned['deleted']} removed) by pid " in tail
    verified = fresh_kx.ok("audit", "verify").stdout
    assert "intact" in verified
