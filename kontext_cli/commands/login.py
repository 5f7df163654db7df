"""``kontext login``, ``logout`` and ``whoami``: the user's session, held by the daemon."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from kontext.common import paths
from kontext_cli import errors, render
from kontext_cli.commands.common import daemon

LOGIN_HELP = """Sign in, in the browser, with PKCE and a one-time loopback redirect.

Without --issuer the daemon's embedded issuer signs in the OS account the
daemon runs as (user:NAME@HOST; nothing to type). With --issuer URL any OpenID
Connect provider works (discovery, pushed requests where offered, PKCE, ID
token checks); the user is the verified email from the ID token or UserInfo,
or ISSUER#SUB. The daemon keeps the session (its refresh token never leaves the
daemon).

Logging in again ends the current session, its grants and its live
credentials: kontext says what would end and asks at a terminal; elsewhere it
changes nothing unless you pass --force.

In CI, --federate github-actions|gitlab|oidc logs the job in with its platform's
OIDC token instead: no browser, no waiting. The user is the workload
(ci:github:OWNER/REPO@REF) and what its agents may have comes from the trust
policy (.kontext/ci.toml at a protected ref, or the org's ci.toml).
"""


class Platform(StrEnum):
    """``--federate``'s values (completed by the shells, listed in the man page)."""

    github_actions = "github-actions"
    gitlab = "gitlab"
    oidc = "oidc"


EXTERNAL_SCOPES = "openid email profile offline_access"
EXTERNAL_CALLBACK = "/callback"


def register(app: typer.Typer) -> None:
    app.command("login", help=LOGIN_HELP)(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)


def login(
    issuer: Annotated[
        str | None, typer.Option("--issuer", help="An external OIDC provider's issuer URL.")
    ] = None,
    client_id: Annotated[
        str, typer.Option("--client-id", help="The client id registered at --issuer.")
    ] = "kontext",
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the URL; do not open a browser.")
    ] = False,
    timeout: Annotated[
        int, typer.Option("--timeout", min=5, max=3600, help="Seconds to wait for the browser.")
    ] = 300,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="End the current session (its grants and live credentials) without asking.",
        ),
    ] = False,
    federate: Annotated[
        Platform | None,
        typer.Option(
            "--federate",
            metavar="PLATFORM",
            help="CI: log in with the job's OIDC token from this platform.",
        ),
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option("--token-file", metavar="PATH", help="With --federate: read the token here."),
    ] = None,
    token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            metavar="VAR",
            help="With --federate: the token's variable (gitlab: KONTEXT_ID_TOKEN).",
        ),
    ] = None,
    checkout: Annotated[
        str,
        typer.Option(
            "--checkout",
            metavar="DIR",
            help="With --federate: the job's git checkout, for .kontext/ci.toml.",
        ),
    ] = ".",
) -> None:
    from kontext_cli.login import flow, local

    if federate is None and (token_file or token_env or checkout != "."):
        raise errors.UsageError("--token-file, --token-env and --checkout go with --federate")
    if federate is not None:
        from kontext_cli.commands import login_federate

        browser_flags = client_id != "kontext" or no_browser or timeout != 300
        request = login_federate.FederateRequest(
            federate.value, issuer, token_file, token_env, checkout, browser_flags, force
        )
        login_federate.run(request)
        return

    if issuer is not None and not issuer.startswith(
        ("https://", "http://127.0.0.1", "http://localhost")
    ):
        raise errors.UsageError("--issuer must be an https:// URL (or http on loopback)")
    # Who is logged in comes first: without a terminal "already logged in as X until T"
    # tells more than "no terminal", and neither changes anything.
    force = force or _may_replace(flow)
    flow.require_person(
        "login", open_browser=not no_browser, beforehand="log in beforehand at a terminal"
    )
    if issuer is None:
        issuer, secret = local.issuer_and_secret(paths.resolve())
        extra = {"scope": "openid profile email offline_access"}
        path, secret_or_none = None, secret
    else:
        extra = {"scope": EXTERNAL_SCOPES, "prompt": "consent"}
        path, secret_or_none = EXTERNAL_CALLBACK, None
    meta = flow.discover(issuer)
    result, session, redirect_uri = flow.authorize(
        meta,
        client_id,
        extra,
        secret=secret_or_none,
        open_browser=not no_browser,
        timeout=float(timeout),
        callback_path=path,
    )
    if result.error is not None or result.code is None:
        raise errors.Denied(f"login was not completed ({result.error or 'no code'})")
    body = {
        "issuer": issuer,
        "client_id": client_id,
        "code": result.code,
        "code_verifier": session.take_verifier(),
        "redirect_uri": redirect_uri,
        "nonce": session.nonce,
        "force": force,
    }
    with daemon() as conn:
        who = conn.call("POST", "/v1/session/login", body)
    render.out.print(f"Logged in as {who['user']} ({who['issuer']})")


def _may_replace(flow: Any) -> bool:
    """Whether to end the current session: nothing to end (False, the daemon agrees), the
    user said yes at a terminal (True), or else refuse (issue 19: a second login used to
    end every grant and credential without a word)."""
    with daemon() as conn:
        info = conn.call("GET", "/v1/session")
    grants, creds = int(info.get("grants") or 0), int(info.get("live_credentials") or 0)
    if not info.get("logged_in") and not grants and not creds:
        return False
    if info.get("logged_in"):
        who = (
            f"already logged in as {info['user']} ({info['issuer']}) "
            f"until {render.when(info.get('expires_at'))}"
        )
    else:
        who = f"the local account {info['user']} has approvals"
    stake = f"{_count(grants, 'grant')} and {_count(creds, 'live credential')}"
    if flow.why_nobody_can_answer() is None:
        render.err.print(f"{who[0].upper()}{who[1:]}. Logging in ends that session: {stake}.")
        if _yes("End it and log in? [y/N]: "):
            return True
        raise errors.Conflict(f"nothing changed: {who}")
    raise errors.Conflict(
        f"{who}; logging in ends that session, {stake}: run 'kontext login --force' to go ahead"
    )


def _yes(question: str) -> bool:
    """A y/N answer from the terminal. The end of input is "no" (click's confirm called it
    an abort, which read as "cancelled (Ctrl-C)"); a real Ctrl-C still cancels."""
    render.err.print(question, end="")
    line = sys.stdin.readline()
    if not line:
        render.err.print()  # finish the prompt's line before the answer to "no"
    return line.strip().lower() in ("y", "yes")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def logout() -> None:
    """End the session: revoke its consent grants and its live credentials."""
    with daemon() as conn:
        result = conn.call("POST", "/v1/session/logout")
    if result["logged_out"]:
        grants = _count(int(result.get("grants_revoked") or 0), "grant")
        creds = _count(int(result.get("credentials_revoked") or 0), "live credential")
        render.out.print(
            f"Logged out {result['user']}; {grants} and {creds} ended. Agents need your "
            "approval again (as the local account) or a new login"
        )
    else:
        render.out.print(f"Not logged in (acting as the local account {result['user']})")


def whoami(
    check: Annotated[
        bool,
        typer.Option("--check", help="Ask the issuer now whether the session is still active."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the user, the issuer and when the session expires."""
    with daemon() as conn:
        info = conn.call(
            "POST" if check else "GET", "/v1/session/check" if check else "/v1/session"
        )
    if as_json:
        render.emit_json(info)
        return
    if info.get("issuer") is None:
        render.out.print(f"user:    {info['user']} (local account; not logged in)")
        return
    render.out.print(f"user:    {info['user']}")
    render.out.print(f"issuer:  {info['issuer']}")
    workload = info.get("workload")
    if isinstance(workload, dict):
        run = f"run {workload.get('run_id')} attempt {workload.get('run_attempt')}"
        render.out.print(
            f"job:     {workload.get('workflow')} ({workload.get('event')}), {run}",
            markup=False,
            highlight=False,
        )
    if info.get("logged_in"):
        render.out.print(f"expires: {render.when(info.get('expires_at'))}")
    else:
        render.out.print(f"ended:   {info.get('ended')}")
