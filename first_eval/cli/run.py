"""``first-eval run`` — a study end to end, written up as a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def run(
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="Study YAML (default: configs/default.yaml, the embedded SmolLM2 study).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Run directory (default: reports/<study>-<timestamp>).")] = None,
    mmlu_full: Annotated[bool, typer.Option(
        "--mmlu-full", help="Score all 14,042 MMLU questions instead of the configured subset.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Run a study: build what it needs (cached), score every model on every dataset, write a report.

    Example: first-eval run --out reports/default
    """
    from first_eval.study.config import StudyConfig, default_config_path
    from first_eval.study.runner import StudyRunner, default_out

    cfg = StudyConfig.from_yaml(config or default_config_path())
    StudyRunner(cfg, out or default_out(cfg), progress=progress, mmlu_full=mmlu_full).run()


def register(app: typer.Typer) -> None:
    app.command("run")(run)
