"""``kontext audit export`` carries its trust with it: the pinned anchor, the keys, and a
signed checkpoint over its last event, so ``audit verify --file`` checks it on its own —
and a file edited, added to or re-signed with another key does not verify."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

import jwt
from conftest import Kontext
from test_audit_anchor import attacker_key
from test_audit_verify import broken_at


def export(k: Kontext, tmp_path: Path, *args: str) -> list[dict[str, object]]:
    out = tmp_path / "export.jsonl"
    k.ok("audit", "export", *args, "-o", str(out))
    return [json.loads(line) for line in out.read_text().splitlines()]


def save(tmp_path: Path, lines: list[dict[str, object]]) -> str:
    out = tmp_path / "edited.jsonl"
    out.write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in lines))
    return str(out)


def events(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [x for x in lines if "kontext_record" not in x]


def test_an_export_carries_the_anchor_and_ends_signed(fresh_kx: Kontext, tmp_path: Path) -> None:
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    lines = export(fresh_kx, tmp_path)  # the daemon is running: it signs the newest first
    anchor = lines[0]
    assert anchor["kontext_record"] == "anchor" and anchor["kids"]
    assert str(anchor["where"]).startswith("file:")
    keys = [x for x in lines if x.get("kontext_record") == "key"]
    assert [k["kid"] for k in keys] == anchor["kids"]
    signed = [x for x in lines if x.get("kontext_record") == "checkpoint"]
    assert max(int(str(c["event_id"])) for c in signed) == events(lines)[-1]["id"]
    out = fresh_kx.ok("audit", "verify", "--file", str(tmp_path / "export.jsonl"))
    assert out.stdout.startswith(f"verified {len(events(lines))} events")
    assert f"signed by key {anchor['kids'][0]}" in out.stdout  # type: ignore[index]


def test_an_export_up_to_a_past_time_runs_on_to_its_signature(
    fresh_kx: Kontext, tmp_path: Path
) -> None:
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    time.sleep(0.05)
    cutoff = dt.datetime.now().isoformat()
    time.sleep(0.05)
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    fresh_kx.ok("audit", "checkpoint")
    lines = export(fresh_kx, tmp_path, "--until", cutoff)
    before = dt.datetime.fromisoformat(cutoff).timestamp()
    later = [e for e in events(lines) if float(str(e["ts"])) >= before]
    assert later, "the export ends at the first checkpoint after --until"
    verified = fresh_kx.ok("audit", "verify", "--file", str(tmp_path / "export.jsonl"))
    assert "intact" in verified.stdout


def test_a_tampered_export_does_not_verify(fresh_kx: Kontext, tmp_path: Path) -> None:
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    lines = export(fresh_kx, tmp_path)
    fresh_kx.stop()
    # An edited event.
    edited = [dict(x) for x in lines]
    first = events(edited)[2]
    first["event"] = "credential.denied"
    assert "its content was edited" in broken_at(fresh_kx, "--file", save(tmp_path, edited))
    # An event added at the end, correctly chained: no signature covers it.
    last = events(lines)[-1]
    fake = {"event": "agent.created", "id": int(str(last["id"])) + 1, "ts": time.time()}
    fake |= {"prev_hash": last["hash"], "agent": {"id": "agent:ghost"}}
    body = json.dumps(fake, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    fake["hash"] = hashlib.sha256(body.encode()).hexdigest()
    err = broken_at(fresh_kx, "--file", save(tmp_path, [*lines, fake]))
    assert f"no signed checkpoint in the file covers events after {last['id']}" in err


def test_an_export_re_signed_with_another_key_fails_with_the_real_key(
    fresh_kx: Kontext, tmp_path: Path
) -> None:
    name = fresh_kx.agent("github:pulls:read")
    fresh_kx.ok("exec", "--agent", name, "--", "true")
    lines = export(fresh_kx, tmp_path)
    real = str(lines[0]["kids"][0])  # type: ignore[index]
    private, kid, jwk = attacker_key()
    forged: list[dict[str, object]] = []
    for line in lines:
        kind = line.get("kontext_record")
        if kind == "anchor":
            forged.append(line | {"kids": [kid]})
        elif kind == "key":
            forged.append({"kontext_record": "key", "kid": kid, "jwk": jwk})
        elif kind == "checkpoint":
            claims = {k: line[k] for k in ("event_id", "event_hash", "kind")} | {"iat": 1}
            headers = {"kid": kid, "typ": "kontext-checkpoint+jwt"}
            token = jwt.encode(claims, private, algorithm="ES256", headers=headers)
            forged.append(line | {"kid": kid, "jws": token})
        else:
            forged.append(line)
    path = save(tmp_path, forged)
    # On its own it is consistent, and it says whose key signed it ...
    alone = fresh_kx.ok("audit", "verify", "--file", path).stdout
    assert f"signed by key {kid}" in alone and real not in alone
    # ... and checked against the key the reader trusts, it fails.
    err = broken_at(fresh_kx, "--file", path, "--key", real)
    assert "which is not a pinned key" in err
    assert fresh_kx.run("audit", "verify", "--key", real).returncode == 2  # --key needs --file
    good = fresh_kx.run("audit", "verify", "--file", str(tmp_path / "export.jsonl"), "--key", real)
    assert good.returncode == 0
