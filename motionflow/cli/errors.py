"""How the commands fail: motionflow errors, interrupts and bugs become messages and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from motionflow.cli.format import make_console
from motionflow.errors import MotionflowError, RecipeError

__all__ = ["EX_SOFTWARE", "die", "handle_errors", "internal_error", "last_resort"]

EX_SOFTWARE = 70
"""Exit code of an internal error (a bug in motionflow), as in BSD's sysexits.h."""


def die(exc: MotionflowError) -> NoReturn:
    """Print ``exc`` on stderr (a recipe error: every problem, located) and exit with its code."""
    err = make_console(stderr=True)
    if isinstance(exc, RecipeError):
        for diag in exc.diagnostics:
            style = "red" if diag.severity == "error" else "yellow"
            err.print(diag.render(), style=style if diag.line == 0 else None, markup=False)
        count = sum(1 for d in exc.diagnostics if d.severity == "error")
        err.print(f"[red]{count} error{'s' if count != 1 else ''}; nothing was run or spent.[/]")
    else:
        from rich.markup import escape

        err.print(f"[red]error:[/] {escape(str(exc))}")
    sys.exit(exc.exit_code)


@contextmanager
def handle_errors(*, detach: bool = False) -> Iterator[None]:
    """Report a motionflow error (see :func:`die`) or Ctrl-C (exit 130) raised in the block.

    Args:
        detach: paid jobs may be in flight: the Ctrl-C message says they stay in the journal.
    """
    try:
        yield
    except MotionflowError as exc:
        die(exc)
    except KeyboardInterrupt:
        message = (
            "[yellow]interrupted[/]: nothing partial was kept; run the same command to continue"
        )
        if detach:
            message = (
                "[yellow]detached[/]: nothing partial was kept, and jobs already submitted stay "
                "in the journal (motionflow jobs lists them). Run the same command to resume "
                "them: they are polled and downloaded, never paid for again"
            )
        make_console(stderr=True).print(message)
        sys.exit(130)


def internal_error(exc: Exception) -> NoReturn:
    """Report an unexpected exception as a bug in one line (redacted), and exit 70.

    The traceback is printed (redacted too) only with ``MOTIONFLOW_DEBUG=1``.
    """
    import os

    from motionflow.providers.redact import Redactor
    from motionflow.version import installed_version

    redact = Redactor(os.environ.get("EMPIRIOLABS_API_KEY", ""))
    if os.environ.get("MOTIONFLOW_DEBUG") == "1":
        import traceback

        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    detail = " ".join(str(exc).split()) or "(no message)"
    line = (
        f"internal error: {type(exc).__name__}: {detail}; this is a bug in motionflow: "
        f"please report it with the command you ran (motionflow --version: {installed_version()})"
    )
    sys.stderr.write(redact(line) + "\n")
    sys.stderr.flush()
    sys.exit(EX_SOFTWARE)


def last_resort(call: Callable[[], Any]) -> Any:
    """``call()``; an exception that nothing else handled is an internal error (exit 70).

    Interrupts and exits pass through (``KeyboardInterrupt`` and ``SystemExit`` are not
    ``Exception``), and so do click's own exceptions; a motionflow error is reported as usual.
    """
    try:
        return call()
    except (click.ClickException, click.exceptions.Abort, click.exceptions.Exit):
        raise
    except MotionflowError as exc:
        die(exc)
    except Exception as exc:  # noqa: BLE001 - the last resort: anything else is a bug
        internal_error(exc)
