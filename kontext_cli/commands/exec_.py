"""``kontext exec``: the typer definition (help, usage errors, and the slow path).

Well-formed invocations never reach here: ``main`` parses them with
``execrun.parse_fast`` and calls ``execrun.run`` directly. Both roads end in
the same ``run``; a test checks they parse alike.
"""

from __future__ import annotations

from typing import Annotated

import typer

from kontext_cli import execrun

HELP = """Run CMD with a short-lived credential for one agent, in its environment only.

The child gets KONTEXT_TOKEN, the integration's variables (e.g. GITHUB_TOKEN),
KONTEXT_AGENT, KONTEXT_TOKEN_EXPIRES, KONTEXT_CREDENTIAL_ID and KONTEXT_URL (the
loopback issuer, for RFC 8693 exchange of its own token); inherited credentials
of other integrations are removed. On Linux CMD and everything it starts are
confined: kontext's files, daemon and the session D-Bus are hidden from them,
they cannot signal or ptrace anything outside their own tree, nor type into
their terminal (exec.confine, --no-confine; 'kontext doctor' shows the level).
The credential is revoked when CMD exits or this process dies, and what CMD
leaves running is ended with it.
Exit status: CMD's own; 122 denied (also: refused inside an agent); 123
confinement required but unavailable; 125 kontext failed before CMD ran; 126
CMD not executable; 127 CMD not found.
"""


def register(app: typer.Typer) -> None:
    app.command(
        "exec",
        help=HELP,
        context_settings={"allow_interspersed_args": False},
        no_args_is_help=True,
    )(exec_command)


def exec_command(
    command: Annotated[
        list[str], typer.Argument(metavar="-- CMD [ARGS]...", help="The command to run.")
    ],
    agent: Annotated[str, typer.Option("--agent", "-a", help="The agent to act as.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            "-s",
            help="Ask only for INTEGRATION:SCOPE; repeat. Default: all the agent's scopes.",
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="The resource, e.g. acme-corp/backend.")
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option(
            "--ttl", help="Credential lifetime, e.g. 5m (default 10m, capped by the agent)."
        ),
    ] = None,
    no_confine: Annotated[
        bool,
        typer.Option(
            "--no-confine",
            help="Run CMD without confinement (audited; refused inside an agent and "
            "when exec.confine is 'require').",
        ),
    ] = False,
) -> None:
    request = execrun.ExecRequest(
        agent=agent,
        command=command,
        scopes=scope or [],
        target=target,
        ttl=ttl,
        no_confine=no_confine,
    )
    raise typer.Exit(execrun.run(request))
