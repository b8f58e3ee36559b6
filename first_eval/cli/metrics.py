"""``first-eval metrics FILE`` — calibration metrics for a predictions table from anywhere.

This module parses the flags and prints; the rows themselves come from
:mod:`first_eval.results` (``compute_results``, ``compute_comparisons``), which the study runner,
``first_train`` and :mod:`first_eval.synthetic` call too. NumPy and pandas only: this command
never imports torch or transformers, except ``--calibrate`` with a netcal-backed method
(``bbq``, ``beta``, ``logistic``), where netcal imports torch when the calibrator is fitted.

``--calibrate METHOD`` cross-fits a calibrator of :mod:`first_eval.calibrators` on each
(model, dataset) and reports the calibrated probabilities' metrics as extra rows named
``<model>+<method>`` (``<arm>+<method>@<seed>`` for a seed replica, so ``--arms`` groups them):
in the table under each raw row, in ``--json`` under a separate key, ``"calibrated"``, whose
rows have the ``"results"`` schema plus ``source_model``, ``method``, ``folds`` and ``seed``;
``"results"`` is unchanged.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from first_eval.errors import UserError
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


def _calibrated_name(model: str, method: str) -> str:
    from first_eval.arms import arm_of

    arm = arm_of(model)
    return f"{arm}+{method}{model[len(arm):]}"  # a replica's "@<seed>" stays last


def _check_method(method: str) -> None:
    from first_eval.calibrators import CALIBRATORS

    if method not in CALIBRATORS:
        raise UserError(f"--calibrate: unknown method {method!r} (methods: {', '.join(CALIBRATORS)})")


def calibrated_frame(frame, method: str, *, folds: int, seed: int):
    """The predictions table with each (model, dataset)'s probabilities cross-fitted by ``method``.

    Models are renamed ``<model>+<method>`` (see the module docstring); every item's row comes
    from a calibrator fitted on the other ``folds - 1`` folds of its own (model, dataset).
    """
    import pandas as pd

    from first_eval.calibrators import cross_fit
    from first_eval.predictions import group_predictions, validate_frame

    _check_method(method)
    parts = []
    for g in group_predictions(frame):
        try:
            res = cross_fit(method, g.probs, g.labels, n_folds=folds, seed=seed, n_options=g.n_options)
        except UserError as exc:
            raise UserError(f"--calibrate {method} on model {g.model!r}, dataset {g.dataset!r}: {exc}") from None
        out = g.frame.copy()
        out["model"] = _calibrated_name(g.model, method)
        out["probs"] = [res.probs[i, :n].tolist() for i, n in enumerate(g.n_options)]
        parts.append(out.drop(columns=[c for c in ("option_mass", "top1_correct") if c in out]))
    return validate_frame(pd.concat(parts, ignore_index=True), source=f"--calibrate {method}")


def _interleave(results: list[dict], calibrated: list[dict]) -> list[dict]:
    """Each raw row followed by its calibrated row (for the table)."""
    by_source: dict = {}
    for r in calibrated:
        by_source.setdefault((r["source_model"], r["dataset"]), []).append(r)
    out = []
    for r in results:
        out.append(r)
        out.extend(by_source.pop((r["model"], r["dataset"]), []))
    return out + [r for rows in by_source.values() for r in rows]


def metrics(
    file: Annotated[Path, typer.Argument(help="Predictions table (.jsonl or .parquet).", show_default=False)],
    bins: Annotated[int, typer.Option("--bins", min=1, max=1000, help="Number of bins for ECE/MCE/RMS-CE.")] = 10,
    scheme: Annotated[Scheme, typer.Option("--scheme", help="Binning: equal-width or equal-mass.")] = Scheme.width,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for 95% CIs (0 = none).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap (and of --calibrate's folds).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {\"results\": [...]}.")] = False,
    compare: Annotated[Optional[tuple[str, str]], typer.Option(
        "--compare", metavar="MODEL_A MODEL_B",
        help="Paired bootstrap of MODEL_A − MODEL_B on their shared items (1000 resamples unless --bootstrap).")] = None,
    renormalize: Annotated[bool, typer.Option(
        "--renormalize", help="Divide probability rows by their sum instead of rejecting sums off 1.")] = False,
    arms: Annotated[bool, typer.Option(
        "--arms", help="One row per arm: models named NAME@SEED are seed replicas of NAME; their metrics are "
                       "averaged and the CIs resample seeds, then items (as `first-eval run` reports them).")] = False,
    calibrate: Annotated[Optional[str], typer.Option(
        "--calibrate", metavar="METHOD",
        help="Also report each model's metrics after a post-hoc calibrator cross-fitted on its own labels "
             "(rows MODEL+METHOD; --json: under \"calibrated\"). METHOD: temperature, histogram, isotonic, "
             "bbq, enir, beta, logistic, dirichlet (bbq, beta, logistic need pip install "
             "'first-toolkit\\[netcal]'; dirichlet can change the prediction).")] = None,  # \\[: not rich markup
    folds: Annotated[int, typer.Option(
        "--folds", min=2, help="Cross-fitting folds of --calibrate (seeded by --seed).")] = 5,
) -> None:
    """Calibration metrics for each (model, dataset) in a predictions table.

    Example: first-eval metrics preds.jsonl --bootstrap 1000 --compare teacher student

    Example: first-eval metrics preds.jsonl --calibrate temperature --folds 5 --compare teacher teacher+temperature
    """
    from first_eval.predictions import read_predictions

    if calibrate is not None:
        _check_method(calibrate)  # before reading the file
    frame = read_predictions(file, renormalize=renormalize)
    scheme_name = scheme.value if isinstance(scheme, Scheme) else str(scheme)
    if arms:
        from first_eval.arms import compute_arm_comparisons as compare_fn
        from first_eval.arms import compute_arm_results as results_fn
    else:
        compare_fn, results_fn = compute_comparisons, compute_results
    results = results_fn(frame, n_bins=bins, scheme=scheme_name, bootstrap=bootstrap, seed=seed)
    calibrated = None
    both = frame
    if calibrate is not None:
        import pandas as pd

        cal_frame = calibrated_frame(frame, calibrate, folds=folds, seed=seed)
        calibrated = results_fn(cal_frame, n_bins=bins, scheme=scheme_name, bootstrap=bootstrap, seed=seed)
        sources = {_calibrated_name(m, calibrate): m for m in frame["model"].unique()}
        if arms:
            from first_eval.arms import arm_of

            sources = {arm_of(k): arm_of(v) for k, v in sources.items()}
        for row in calibrated:
            row.update(source_model=sources[row["model"]], method=calibrate, folds=folds, seed=seed)
        both = pd.concat([frame, cal_frame], ignore_index=True)  # --compare may name either
    comparisons = None
    if compare:
        comparisons = compare_fn(both, compare[0], compare[1], n_bins=bins, scheme=scheme_name,
                                 bootstrap=bootstrap or 1000, seed=seed)
    if as_json:
        from first_eval.fileio import nan_to_none

        payload: dict = {"results": results}
        if calibrated is not None:
            payload["calibrated"] = calibrated
        if comparisons is not None:
            payload["comparisons"] = comparisons
        sys.stdout.write(json.dumps(nan_to_none(payload), indent=2, allow_nan=False) + "\n")
        return
    typer.echo(format_table(results if calibrated is None else _interleave(results, calibrated)))
    typer.echo(f"\n{bins} {scheme_name} bins; confidence = top-label probability"
               + (f"; 95% CIs from {bootstrap} bootstrap resamples (seed {seed})" if bootstrap else ""))
    if calibrated is not None:
        typer.echo(f"+{calibrate}: cross-fitted over {folds} folds (seed {seed}); each item is calibrated by a "
                   f"calibrator fitted on the other folds of its model and dataset"
                   + ("; its CIs hold those calibrators fixed" if bootstrap else ""))
    if comparisons is not None:
        typer.echo(format_comparisons(comparisons))


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
