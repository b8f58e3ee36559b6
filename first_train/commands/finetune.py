"""``first-train finetune`` — cross-entropy on the answer letter of multiple-choice items."""

from __future__ import annotations

import typer

from first_train.commands import command_from_config, echo
from first_train.config import FinetuneConfig


def finetune(cfg: FinetuneConfig) -> None:
    """Fine-tune a model with cross-entropy on the answer of multiple-choice items.

    Writes an HF model directory to --out (loadable by the scorer), checkpoints every --save-every steps in --out/checkpoints/step-N/, and resumes after a kill.

    Example: first-train finetune --model smollm2-135m --dataset countries --out runs/teacher --epochs 2
    """
    from first_train.finetune import run_finetune

    result = run_finetune(cfg)
    if result.skipped:
        echo(f"{result.out}: already fine-tuned with these settings ({result.steps} steps); nothing to do")
        return
    first, last = result.losses[0], sum(result.losses[-10:]) / len(result.losses[-10:])
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    echo(f"{result.out}: {result.steps} steps in {result.seconds:.1f} s{resumed}; "
               f"loss {first:.4f} → {last:.4f} (mean of the last 10 steps)")


def register(app: typer.Typer) -> None:
    app.command("finetune")(command_from_config(FinetuneConfig, finetune))
