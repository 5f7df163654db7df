"""Entry point: ``kontext``.

``kontext exec`` and ``kontext audit tail`` with ordinary arguments take a fast
path that never imports typer, rich or httpx (see ``execrun.parse_fast`` and
``audittail.parse_fast``); everything else — including
``exec --help`` and every usage error — goes through the one typer definition in
``kontext_cli.app``. All errors end here, in ``main``: one line on stderr, a
documented exit status, a traceback only with ``--verbose``.
"""

from __future__ import annotations

import os
import sys

from kontext.common.paths import PathsUnusable
from kontext_cli import errors

TYPE_CHECKING = False  # typing costs ~3-5 ms to import; mypy still reads this block
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


CANCELLED = "cancelled (Ctrl-C)"


def _fail(exc: BaseException, *, exec_mode: bool) -> int:
    verbose = "--verbose" in sys.argv or bool(os.environ.get("KONTEXT_DEBUG"))
    if isinstance(exc, PathsUnusable):  # e.g. a /tmp/runtime-UID another user made first
        exc = errors.Forbidden(str(exc))
    if isinstance(exc, errors.KontextError):
        print(f"kontext: {exc.diagnostics()}", file=sys.stderr)
        # An ordinary outcome (not found, denied, ...) is fully said in its one line;
        # only a bare KontextError (exit 1: something we did not foresee) has a trace.
        if verbose and type(exc) is errors.KontextError:
            import traceback

            traceback.print_exception(exc)
        return exc.exec_code if exec_mode else exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        print(f"kontext: {CANCELLED}", file=sys.stderr)
        return errors.Cancelled.exit_code
    if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
        return errors.output_closed()
    print(
        f"kontext: internal error ({type(exc).__name__}); run with --verbose for details",
        file=sys.stderr,
    )
    if verbose:
        import traceback

        traceback.print_exception(exc)
    return errors.EXEC_FAILED if exec_mode else 1


def guarded(fn: Callable[[], int], *, exec_mode: bool) -> int:
    """Run ``fn`` and turn any exception into a message and an exit status."""
    try:
        return fn()
    except SystemExit:
        raise
    except BaseException as exc:
        return _fail(exc, exec_mode=exec_mode)


def _usage_line(exc: Any, root: Any, argv: list[str]) -> str:
    """click's usage error as one line: what is wrong, and where help is."""
    message = _plain_words(exc).rstrip(".")
    message = message[:1].lower() + message[1:]
    where = exc.ctx.command_path if exc.ctx is not None else "kontext"
    named = _command_path(root, argv)  # an option's error can come from the root's context
    if len(named) > len(where):
        where = named
    return f"kontext: {message} (see '{where} --help')"


def _command_path(root: Any, argv: list[str]) -> str:
    """``kontext agent create`` for ``["agent", "create", "x", "--allow"]``."""
    words, command = ["kontext"], root
    for word in argv:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        words.append(word)
        command = sub
    return " ".join(words)


def _plain_words(exc: Any) -> str:
    """typer checks values with pydantic, whose words ("Input should be greater than
    or equal to 1") are not ours: a bad number says the range it must be in."""
    message = str(exc.format_message())
    param = getattr(exc, "param", None)
    # A choice (StrEnum argument) is refused by pydantic as "Value error, 'tcsh' is not
    # one of 'bash', 'zsh', 'fish'": the choice is ours to say, pydantic's prefix is not.
    message = message.replace("Value error, ", "")
    if param is None or "Input should be" not in message:
        return message
    hint = message.split(":", 1)[0]  # "Invalid value for '-n' / '--lines'"
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None and high is not None:
        return f"{hint}: use a whole number from {low} to {high}"
    if "integer" in message:
        return f"{hint}: use a whole number"
    return message.replace("Input should be", "it should be")


def _click_exceptions() -> Any:
    """click's exception classes: typer vendors click (``typer._click``) since 0.2x."""
    try:
        from typer._click import exceptions
    except ImportError:  # an older typer on the real click
        from click import exceptions  # type: ignore[no-redef,import-not-found,unused-ignore]
    return exceptions


def _cancel(signum: int, frame: object) -> None:
    """SIGINT handler for typer commands: typer turns a KeyboardInterrupt into a silent
    exit 130, so a Ctrl-C is raised as our own error, which says what happened."""
    raise errors.Cancelled(CANCELLED)


def _run_typer(argv: list[str]) -> int:
    import signal

    ours = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ours:
        signal.signal(signal.SIGINT, _cancel)
    try:
        return _run_command(argv)
    finally:
        if ours:  # main() is also called in-process (tests): leave the handler as found
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _run_command(argv: list[str]) -> int:
    import typer

    from kontext_cli.app import command as cli_command

    click = _click_exceptions()
    exec_mode = argv[:1] == ["exec"]
    command = cli_command()
    try:
        result = command.main(args=argv, prog_name="kontext", standalone_mode=False)
    except click.NoArgsIsHelpError as exc:
        # A bare group or command: show its help, and fail like a usage error.
        print(exc.ctx.get_help() if exc.ctx else "", file=sys.stderr)
        code = errors.UsageError.exit_code
    except click.UsageError as exc:
        print(_usage_line(exc, command, argv), file=sys.stderr)
        code = errors.UsageError.exit_code
    except typer.Abort:  # click's form of a Ctrl-C
        print(f"kontext: {CANCELLED}", file=sys.stderr)
        return errors.Cancelled.exit_code
    except SystemExit as exc:  # click turns EPIPE on stdout into a bare exit 1
        if exc.code == 1 and _stdout_reader_gone():
            return errors.output_closed()
        raise
    else:
        return result if isinstance(result, int) else 0
    # exec's own failures use 125 (see errors): its command owns 0-125.
    return errors.EXEC_FAILED if exec_mode else code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["exec"]:
        from kontext_cli import execrun

        request = execrun.parse_fast(args[1:])
        if request is not None:
            global _lean_exit
            _lean_exit = True
            return guarded(lambda: execrun.run(request), exec_mode=True)
    if args[:2] == ["audit", "tail"]:
        from kontext_cli import audittail

        tail = audittail.parse_fast(args[2:])
        if tail is not None:
            return guarded(lambda: audittail.run(tail), exec_mode=False)
    return guarded(lambda: _run_typer(args), exec_mode=args[:1] == ["exec"])


# Set when exec's fast path ran: nothing it loaded needs the interpreter's teardown.
_lean_exit = False


def entry() -> None:
    """Console-script entry point."""
    code = main()
    if _lean_exit:
        _exit_now(code)
    try:  # what is still buffered: flushed here, not in the interpreter's teardown
        sys.stdout.flush()
    except BrokenPipeError:
        code = errors.output_closed()
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(code)


def _stdout_reader_gone() -> bool:
    """stdout is a pipe (or socket) whose reader has closed it: poll says POLLERR.

    Asked so that only *our output's* closed pipe is the quiet 141 — a broken
    connection to kontextd is something else, and says so."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _exit_now(code: int) -> None:
    """Exit without finalizing the interpreter.

    Tearing down the modules exec loaded costs ~1.5 ms, a tenth of all of
    ``kontext exec -- true`` (bench/FINDINGS.md), and buys nothing there: the
    child is reaped, the daemon connection is closed, no atexit handler or
    logging is set up on that path, and kontext writes only to stderr, which is
    flushed here (stdout belongs to the child, but is flushed too).
    """
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib is kept off exec's path)
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, or no stream at all
            pass
    os._exit(code & 0xFF)
