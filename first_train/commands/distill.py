"""``first-train distill`` — train a student on a teacher's top-k store."""

from __future__ import annotations

import typer

from first_train.commands import command_from_config, echo
from first_train.config import DistillConfig


def distill(cfg: DistillConfig) -> None:
    """Distill a student from a teacher's top-k store; writes an HF model directory the scorer loads.

    --loss first re-shapes the stored top-k with the store's fitted calibration (run `first-train calibrate` first); full-kd runs the teacher online. The student must share the teacher's tokenizer.

    Example: first-train distill --student "smollm2-135m:layers=0,6,12,18,24,29" --store runs/store --out runs/student-first --loss first --epochs 2
    """
    from first_train.distill import run_distill

    result = run_distill(cfg)
    if result.skipped:
        echo(f"{result.out}: already distilled with these settings ({result.steps} steps); nothing to do")
        return
    last = result.losses[-10:]
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    echo(f"{result.out}: {result.steps} steps of --loss {cfg.loss} in {result.seconds:.1f} s{resumed}; "
         f"loss {result.losses[0]:.4f} → {sum(last) / len(last):.4f} (mean of the last 10 steps)")


def register(app: typer.Typer) -> None:
    app.command("distill")(command_from_config(DistillConfig, distill))
