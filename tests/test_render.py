"""What the CLI prints is what was typed: no emoji codes, no markup, on a pipe or a terminal.

rich turns ``:x:`` into ❌ unless told not to, and ``agent:x:`` is how kontext
writes the agent named ``x`` ("revoked agent:x: 1 live credential(s) ...").
"""

from __future__ import annotations

import os
import pty
import subprocess

from conftest import KONTEXT, Kontext

# Characters rich's emoji codes would have produced for these names.
EMOJI = ("❌", "🆗", "🅰", "😄", "✅")


def _on_terminal(k: Kontext, *args: str) -> str:
    """Run ``kontext ARGS`` with stdout on a terminal (tables and colour on)."""
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [KONTEXT, *args],
            stdout=secondary,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**k.env, "COLUMNS": "200"},
        )
        os.close(secondary)
        secondary = -1
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(primary)
        if secondary != -1:
            os.close(secondary)
    assert proc.returncode == 0, proc.stderr
    return out.decode()


def test_emoji_codes_in_names_and_messages_stay_text(fresh_kx: Kontext) -> None:
    k = fresh_kx
    for name in ("x", "ok", "a"):
        created = k.ok(
            "agent", "create", name, "--allow", "github:pulls:read",
            "--display-name", f"Bot :{name}: :smile: [bold]b[/bold]",
        ).stdout  # fmt: skip
        assert f"created agent:{name} (Bot :{name}: :smile: [bold]b[/bold])" in created
    listed = k.ok("agent", "list").stdout + _on_terminal(k, "agent", "list")
    shown = k.ok("agent", "show", "a").stdout + _on_terminal(k, "agent", "show", "ok")
    revoked = k.ok("revoke", "agent:x").stdout
    disabled = k.ok("agent", "disable", "ok").stdout
    enabled = k.ok("agent", "enable", "a").stdout
    assert revoked.startswith("revoked agent:x: 0 live credential(s) revoked")
    assert disabled.startswith("disabled agent:ok; ") and enabled == "enabled agent:a\n"
    for out in (listed, shown, revoked, disabled, enabled):
        assert not any(e in out for e in EMOJI), out
    assert ":smile:" in listed and "[bold]b[/bold]" in shown
