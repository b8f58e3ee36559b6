"""``first-eval metrics FILE`` — calibration metrics for a predictions table from anywhere.

This module parses the flags and prints; the rows themselves come from
:mod:`first_eval.results` (``compute_results``, ``compute_comparisons``), which the study runner,
``first_train`` and :mod:`first_eval.synthetic` call too. NumPy and pandas only: this command
never imports torch or transformers.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from first_eval.results import compute_comparisons, compute_results


class Scheme(str, Enum):
    width = "width"
    mass = "mass"


# Columns of the table for people (the JSON carries every metric).
_TABLE = (("n", "n", "{:d}"), ("accuracy", "acc", "{:.3f}"), ("ece", "ECE", "{:.4f}"),
          ("mce", "MCE", "{:.3f}"), ("rms_ce", "RMS-CE", "{:.4f}"), ("smooth_ece", "smECE", "{:.4f}"),
          ("brier", "Brier", "{:.4f}"), ("nll", "NLL", "{:.4f}"), ("auroc", "AUROC", "{:.3f}"),
          ("aurc", "AURC", "{:.4f}"))


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return spec.format(value)


def format_table(results: list[dict]) -> str:
    """A plain-text table of the headline metrics, with 95% CIs when present."""
    header = ["model", "dataset"] + [label for _, label, _ in _TABLE]
    lines = []
    for r in results:
        cells = [r["model"], r["dataset"]]
        for key, _, spec in _TABLE:
            cell = _fmt(r[key], spec)
            if f"{key}_ci" in r:
                lo, hi = r[f"{key}_ci"]
                cell += f" [{_fmt(lo, spec)}, {_fmt(hi, spec)}]"
            cells.append(cell)
        lines.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    def render(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [render(header), render(["-" * w for w in widths])]
    out += [render(c) for c in lines]
    return "\n".join(out)


def format_comparisons(comparisons: list[dict]) -> str:
    lines = []
    for c in comparisons:
        lines.append(f"\n{c['model_a']} − {c['model_b']} on {c['dataset']} "
                     f"(n={c['n']}, paired bootstrap, {c['n_resamples']} resamples):")
        for name, d in c["differences"].items():
            lo, hi = d["ci"]
            lines.append(f"  {name:<18} {d['difference']:+.4f}  95% CI [{lo:+.4f}, {hi:+.4f}]  p={d['p_value']:.4f}")
    return "\n".join(lines)


def metrics(
    file: Annotated[Path, typer.Argument(help="Predictions table (.jsonl or .parquet).", show_default=False)],
    bins: Annotated[int, typer.Option("--bins", min=1, max=1000, help="Number of bins for ECE/MCE/RMS-CE.")] = 10,
    scheme: Annotated[Scheme, typer.Option("--scheme", help="Binning: equal-width or equal-mass.")] = Scheme.width,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for 95% CIs (0 = none).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {\"results\": [...]}.")] = False,
    compare: Annotated[Optional[tuple[str, str]], typer.Option(
        "--compare", metavar="MODEL_A MODEL_B",
        help="Paired bootstrap of MODEL_A − MODEL_B on their shared items (1000 resamples unless --bootstrap).")] = None,
    renormalize: Annotated[bool, typer.Option(
        "--renormalize", help="Divide probability rows by their sum instead of rejecting sums off 1.")] = False,
    arms: Annotated[bool, typer.Option(
        "--arms", help="One row per arm: models named NAME@SEED are seed replicas of NAME; their metrics are "
                       "averaged and the CIs resample seeds, then items (as `first-eval run` reports them).")] = False,
) -> None:
    """Calibration metrics for each (model, dataset) in a predictions table.

    Example: first-eval metrics preds.jsonl --bootstrap 1000 --compare teacher student
    """
    from first_eval.predictions import read_predictions

    frame = read_predictions(file, renormalize=renormalize)
    scheme_name = scheme.value if isinstance(scheme, Scheme) else str(scheme)
    if arms:
        from first_eval.arms import compute_arm_comparisons, compute_arm_results

        results = compute_arm_results(frame, n_bins=bins, scheme=scheme_name, bootstrap=bootstrap, seed=seed)
    else:
        results = compute_results(frame, n_bins=bins, scheme=scheme_name, bootstrap=bootstrap, seed=seed)
    comparisons = None
    if compare:
        compare_fn = compute_arm_comparisons if arms else compute_comparisons
        comparisons = compare_fn(frame, compare[0], compare[1], n_bins=bins, scheme=scheme_name,
                                 bootstrap=bootstrap or 1000, seed=seed)
    if as_json:
        from first_eval.fileio import nan_to_none

        payload: dict = {"results": results}
        if comparisons is not None:
            payload["comparisons"] = comparisons
        sys.stdout.write(json.dumps(nan_to_none(payload), indent=2, allow_nan=False) + "\n")
        return
    typer.echo(format_table(results))
    typer.echo(f"\n{bins} {scheme_name} bins; confidence = top-label probability"
               + (f"; 95% CIs from {bootstrap} bootstrap resamples (seed {seed})" if bootstrap else ""))
    if comparisons is not None:
        typer.echo(format_comparisons(comparisons))


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
