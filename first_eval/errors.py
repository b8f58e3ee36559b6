"""The one exception type the command lines turn into a single clear error line.

:func:`run_cli` is the one place that turns it into ``error: <message>`` and exit status 2;
both command lines (``first-eval`` and ``first-train``) run through it. This module imports
nothing but the standard library, so every layer may use it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["UserError", "run_cli"]


class UserError(ValueError):
    """Bad input from a user: a file, a flag, a spec.

    The CLIs print ``error: <message>`` on stderr and exit with status 2, never a traceback.
    It subclasses :class:`ValueError` so library callers can catch either.
    """


def run_cli(typer_app: Callable[..., Any], argv: list[str] | None = None) -> None:
    """Run a command-line app, turning user errors into one line on stderr and exit status 2.

    Parameters
    ----------
    typer_app : typer.Typer
        The app to run (called as ``typer_app(args=argv, standalone_mode=True)``); it is passed
        in so that this module needs no typer import.
    argv : list of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Raises
    ------
    SystemExit
        Status 2 after printing ``error: <message>`` for a :class:`UserError` or a missing file,
        130 after ``interrupted`` for Ctrl-C; otherwise whatever the app exits with.
    """
    try:
        typer_app(args=argv, standalone_mode=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as exc:
        print(f"error: no such file: {exc.filename or exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
