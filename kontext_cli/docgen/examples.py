"""Examples for each command: the EXAMPLES sections of the man pages.

Add a new command's examples to ``EXAMPLES``; each line that starts with
``kontext`` is parsed against the CLI when the docs are generated.
"""

from __future__ import annotations

from kontext_cli.docgen.model import Command

# (explanation, command line); lines starting with "kontext " are checked against the CLI.
Example = tuple[str, str]

WALKTHROUGH: tuple[Example, ...] = (
    (
        "Register three agents, each with only the scopes it needs:",
        "kontext agent create pr-reviewer --allow github:metadata:read "
        "--allow github:pulls:read --allow github:pulls:write",
    ),
    (
        "",
        "kontext agent create issue-triage --allow github:issues:read --allow github:issues:write",
    ),
    ("", "kontext agent create release-notes --allow github:contents:read"),
    (
        "Run a script as agent:pr-reviewer; only that process sees GITHUB_TOKEN, "
        "and the credential dies with it:",
        "kontext exec --agent pr-reviewer -- ./review.sh",
    ),
    (
        "Stop agent:issue-triage now; its live credentials turn inactive at once and "
        "the other agents keep working:",
        "kontext revoke agent:issue-triage",
    ),
    ("Watch issuances, denials and revocations as they happen:", "kontext audit tail -f"),
)

EXAMPLES: dict[tuple[str, ...], tuple[Example, ...]] = {
    ("login",): (
        ("Sign in with the embedded issuer, in your browser:", "kontext login"),
        (
            "Sign in with your organisation's OpenID Connect provider:",
            "kontext login --issuer https://login.acme.com --client-id kontext-cli",
        ),
        (
            "On a machine without a browser, print the URL to open elsewhere:",
            "kontext login --no-browser",
        ),
    ),
    ("logout",): (("End the session, its grants and its live credentials:", "kontext logout"),),
    ("whoami",): (
        ("Who am I, at which issuer, until when?", "kontext whoami"),
        ("Ask the issuer now whether the session is still active:", "kontext whoami --check"),
    ),
    ("consent", "list"): (
        ("What have I approved, for which agents, until when?", "kontext consent list"),
        ("The same as JSON:", "kontext consent list --json"),
    ),
    ("consent", "grant"): (
        (
            "Approve read access ahead of a CI run, for eight hours:",
            "kontext consent grant agent:release-notes --scope github:contents:read --for 8h",
        ),
    ),
    ("consent", "revoke"): (
        (
            "Withdraw every grant to an agent; its next exec asks again:",
            "kontext consent revoke agent:pr-reviewer",
        ),
    ),
    ("agent", "create"): (
        (
            "Register an agent that may read pull requests and post reviews:",
            "kontext agent create pr-reviewer --allow github:metadata:read "
            "--allow github:pulls:read --allow github:pulls:write",
        ),
        (
            "With a display name and at most 15-minute credentials:",
            "kontext agent create release-notes --allow github:contents:read "
            "--display-name 'Release Notes' --max-ttl 15m",
        ),
    ),
    ("agent", "list"): (
        ("Show every agent, its scopes and live credentials:", "kontext agent list"),
        ("Just the names, for a script:", "kontext agent list --json | jq -r '.[].name'"),
    ),
    ("agent", "show"): (
        ("Show one agent:", "kontext agent show pr-reviewer"),
        ("The same as JSON:", "kontext agent show agent:pr-reviewer --json"),
    ),
    ("agent", "delete"): (
        ("Delete an agent you no longer use:", "kontext agent delete release-notes"),
    ),
    ("agent", "disable"): (
        ("Refuse new credentials and revoke live ones:", "kontext agent disable issue-triage"),
    ),
    ("agent", "enable"): (
        ("Undo kontext revoke agent:issue-triage:", "kontext agent enable issue-triage"),
    ),
    ("exec",): (
        (
            "Run a script as agent:pr-reviewer; GITHUB_TOKEN is set for the script only:",
            "kontext exec --agent pr-reviewer -- ./review.sh",
        ),
        (
            "Ask for less than the agent may have: read only, one repository, five minutes:",
            "kontext exec --agent pr-reviewer --scope github:pulls:read "
            "--target acme-corp/backend --ttl 5m -- ./review.py",
        ),
        (
            "A CI step; the step fails with the command's own exit status:",
            "kontext exec -a release-notes -- make release-notes",
        ),
    ),
    ("revoke",): (
        (
            "Stop an agent now: disable it and revoke all its live credentials:",
            "kontext revoke agent:issue-triage",
        ),
        ("Also terminate its running processes:", "kontext revoke agent:issue-triage --kill"),
        (
            "Revoke one credential by its id (kontext credential list shows it; its "
            "process saw it in KONTEXT_CREDENTIAL_ID):",
            "kontext revoke credential q2v8mUZ3tJd1G0xGkz1Q4A",
        ),
    ),
    ("credential", "list"): (
        (
            "Every live credential: jti, agent, scopes, target, process, expiry:",
            "kontext credential list",
        ),
        (
            "One agent's, as JSON (a jti to revoke, the pid it belongs to):",
            "kontext credential list --agent pr-reviewer --json",
        ),
    ),
    ("audit", "tail"): (
        ("The last 20 events:", "kontext audit tail"),
        ("Follow new events live until interrupted:", "kontext audit tail -f"),
        (
            "One agent's last 100 events, one JSON object per line:",
            "kontext audit tail -n 100 --agent pr-reviewer --json",
        ),
        (
            "Denials in the last two hours:",
            "kontext audit tail --event credential.denied --since 2h",
        ),
    ),
    ("audit", "verify"): (
        ("Check the log's hash chain and signed checkpoints:", "kontext audit verify"),
        ("Check an export someone sent you:", "kontext audit verify --file audit.jsonl"),
    ),
    ("audit", "export"): (
        (
            "Last week's events as JSON lines, for a log shipper:",
            "kontext audit export --since 7d -o audit.jsonl",
        ),
    ),
    ("audit", "prune"): (
        (
            "Drop events older than 90 days; the rest still verifies:",
            "kontext audit prune --before 90d",
        ),
    ),
    ("audit", "checkpoint"): (
        ("Sign a checkpoint over the newest event now:", "kontext audit checkpoint"),
    ),
    ("policy", "schema"): (
        ("The Cedar schema to write policies against:", "kontext policy schema"),
    ),
    ("policy", "check"): (
        ("Which policies are loaded, and are any files broken?", "kontext policy check"),
    ),
    ("policy", "reload"): (("Load edited policy files now:", "kontext policy reload"),),
    ("policy", "explain"): (
        (
            "Would agent:pr-reviewer get write access here, and which policy decides?",
            "kontext policy explain --agent pr-reviewer --scope github:pulls:write "
            "--target acme-corp/backend",
        ),
    ),
    ("daemon", "run"): (
        ("Run kontextd in the foreground, e.g. under a supervisor:", "kontext daemon run"),
    ),
    ("daemon", "start"): (
        ("Start kontextd ahead of the first command:", "kontext daemon start"),
        (
            "The database is gone and no backup will come back: start a new, empty one:",
            "kontext daemon start --new-database",
        ),
    ),
    ("daemon", "stop"): (("Stop kontextd; live credentials are revoked:", "kontext daemon stop"),),
    ("daemon", "status"): (
        ("Is it running, and how does it keep secrets?", "kontext daemon status"),
        ("The same as JSON:", "kontext daemon status --json"),
    ),
    ("daemon", "install"): (
        ("Start kontextd with your login session (systemd or launchd):", "kontext daemon install"),
        ("See the unit it would write:", "kontext daemon install --print"),
    ),
    ("daemon", "uninstall"): (
        ("Stop starting kontextd with your session:", "kontext daemon uninstall"),
    ),
    ("doctor",): (
        ("Check the set-up; each problem comes with its fix:", "kontext doctor"),
        ("Restart a kontextd left over from before an upgrade:", "kontext doctor --fix"),
        (
            "Only what failed, for a script:",
            "kontext doctor --json | jq '.checks[] | select(.status == \"fail\")'",
        ),
    ),
    ("completion",): (
        (
            "Install bash completion for your user:",
            "kontext completion bash > ~/.local/share/bash-completion/completions/kontext",
        ),
        ("Load zsh completion in this shell only:", "source <(kontext completion zsh)"),
        (
            "Install fish completion:",
            "kontext completion fish > ~/.config/fish/completions/kontext.fish",
        ),
    ),
    ("config", "set"): (
        (
            "Refuse the plaintext-file fallback when no OS keyring works:",
            "kontext config set secrets.fallback refuse",
        ),
    ),
    ("config", "get"): (("Show the current setting:", "kontext config get secrets.fallback"),),
    ("config", "path"): (
        ("Open the config file in your editor:", '"$EDITOR" "$(kontext config path)"'),
    ),
    ("config", "reload"): (
        (
            "Apply an edit now (kontextd also notices it within a second):",
            '"$EDITOR" "$(kontext config path)" && kontext config reload',
        ),
    ),
    ("keys", "rotate"): (
        (
            "New keys, published now, signing after keys.rotation_grace:",
            "kontext keys rotate",
        ),
        ("Switch at once (a key you think is exposed):", "kontext keys rotate --now"),
    ),
    ("keys", "list"): (
        ("Print the JWKS that resource servers verify against:", "kontext keys list --json"),
    ),
    ("integration", "list"): (
        (
            "Which integrations are connected, and how agents reach them:",
            "kontext integration list",
        ),
    ),
    ("integration", "show"): (
        (
            "GitHub's scopes and route catalogue (METHOD /path -> scope on target):",
            "kontext integration show github",
        ),
    ),
    ("integration", "connect"): (
        (
            "Store a GitHub token from your password manager (never echoed):",
            "kontext integration connect github --secret-stdin",
        ),
        (
            "Connect with OAuth in a browser on another machine:",
            "kontext integration connect github --no-browser",
        ),
    ),
    ("integration", "disconnect"): (
        ("Forget GitHub's upstream secret:", "kontext integration disconnect github"),
    ),
}


def examples_for(command: Command) -> tuple[Example, ...]:
    """The hand-written examples, or a pointer to ``--help`` for a command that has none yet."""
    if not command.path:
        return WALKTHROUGH
    return EXAMPLES.get(command.path) or (
        ("Show this command's options:", f"{command.name} --help"),
    )
