"""``first-train calibrate`` — fit the re-shaping temperature c of a store on a validation split."""

from __future__ import annotations

import typer

from first_train.commands import command_from_config, echo
from first_train.config import CalibrateConfig


def _describe(name: str, fit: dict) -> str:
    t = fit["temperature"]
    setting = "none (nothing beat the un-calibrated teacher)" if t is None else f"{'c' if name == 'reshape' else 'T'} = {t:g}"
    return f"{name:<17} {setting}; validation ECE {fit['ece_before']:.4f} → {fit['ece_after']:.4f}"


def calibrate(cfg: CalibrateConfig) -> None:
    """Fit the teacher's re-shaping temperature on a validation split and record it in the store's manifest.

    The teacher is run on the split; its answer distribution is read from its top-k (as the store holds it) the way the scorer reads it, and c minimizes the ECE over a two-stage grid. `first-train distill --loss first` uses the recorded value.

    Example: first-train calibrate --store runs/store --teacher runs/teacher --dataset countries --split val
    """
    from first_train.calibrate import run_calibrate

    result = run_calibrate(cfg)
    cov = result["coverage"]
    echo(f"{cfg.store}: {result['n_items']} validation items; all option letters in the top-{result['k']} for "
         f"{cov['all_letters']:.1%}; the scorer's ECE of the teacher {result['scorer_ece']:.4f}")
    for name, fit in result["fits"].items():
        echo("  " + _describe(name, fit))
    chosen = result["chosen"]
    echo(f"recorded: method={chosen['method']}, temperature={chosen['temperature']}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(command_from_config(CalibrateConfig, calibrate))
