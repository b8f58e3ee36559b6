"""``first-eval report DIR`` — rebuild a run's report from its files, without recomputing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `first-eval run`.", show_default=False)],
) -> None:
    """Rebuild report.md and index.html of a run directory (nothing is re-scored).

    Example: first-eval report reports/default-20261126-101500
    """
    from first_eval.report import build_report

    md, html = build_report(run_dir)
    typer.echo(f"wrote {md} and {html}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
