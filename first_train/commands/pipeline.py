"""``first-train pipeline`` — finetune → extract → calibrate → distill (→ score) from one YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from first_train.commands import echo


def pipeline(
    config: Annotated[Path, typer.Option("--config", help="Pipeline YAML file (see configs/pipeline_default.yaml).",
                                         show_default=False)],
    out: Annotated[Optional[str], typer.Option("--out", help="Output directory (overrides the file's `out`).")] = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Train only this student (repeatable).")] = None,
    summary: Annotated[Optional[Path], typer.Option("--summary", help="Also write the summary JSON here.")] = None,
) -> None:
    """Run finetune → extract → calibrate → distill for a set of students, skipping every stage whose output exists for the same inputs.

    Example: first-train pipeline --config configs/pipeline_default.yaml
    """
    from first_eval.fileio import write_json_atomic
    from first_train.pipeline import load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(config, out=out)
    result = run_pipeline(cfg, only=tuple(only or ()))
    write_json_atomic(cfg.out / "pipeline_summary.json", result)
    if summary is not None:
        write_json_atomic(summary, result)
    echo(format_summary(result))


def format_summary(result: dict) -> str:
    """A short, human-readable account of a pipeline run."""
    lines = [f"pipeline {result['out']} ({result['seconds']:.0f} s)"]
    for name, stage in result["stages"].items():
        state = "skipped (up to date)" if stage.get("skipped") else f"{stage.get('seconds', 0):.0f} s"
        extra = ""
        if name == "calibrate":
            chosen = stage["chosen"]
            extra = (f" method={chosen['method']} temperature={chosen['temperature']} "
                     f"val ECE {chosen['ece_before']:.4f} → {chosen['ece_after']:.4f}")
        elif stage.get("final_loss") is not None:
            extra = f" {stage['steps']} steps, final loss {stage['final_loss']:.4f}"
        lines.append(f"  {name:<28} {state}{extra}")
    evaluation = result["stages"].get("evaluate")
    if evaluation:
        lines.append("  model                         dataset            n     acc     ECE")
        for r in evaluation["results"]:
            lines.append(f"  {r['model']:<29} {r['dataset']:<18} {r['n']:<5} {r['accuracy']:.3f}  {r['ece']:.4f}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline)
