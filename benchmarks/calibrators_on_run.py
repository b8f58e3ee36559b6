"""Cross-fitted ECE before and after every post-hoc calibrator, for one model of a run.

    .venv/bin/python benchmarks/calibrators_on_run.py reports/default-YYYYMMDD-HHMMSS
    .venv/bin/python benchmarks/calibrators_on_run.py preds.parquet --model student-ce
    .venv/bin/python benchmarks/calibrators_on_run.py --lm-eval tests/fixtures/lm_eval/v0.4.13

For each dataset of the model (default ``teacher``): the raw top-label ECE (equal-width bins,
``--bins``), then the ECE of the probabilities cross-fitted by each calibrator of
:data:`first_eval.calibrators.CALIBRATORS` (``--folds`` folds, ``--seed``; every item is
calibrated by a calibrator fitted on the other folds of the same dataset), printed as a Markdown
table. Dirichlet calibration can change the prediction, so its accuracy is shown too (the other
calibrators keep the raw accuracy). A method that cannot run on a dataset (netcal missing,
Dirichlet on items with different option counts) shows ``n/a`` and a footnote. ``--lm-eval``
reads lm-eval output (:func:`first_eval.imports.lm_eval.read_lm_eval`) instead of a run, and
takes its model (or ``--model``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from first_eval.calibration import accuracy_score, expected_calibration_error  # noqa: E402
from first_eval.calibrators import CALIBRATORS, cross_fit  # noqa: E402
from first_eval.errors import UserError  # noqa: E402
from first_eval.predictions import group_predictions, read_predictions  # noqa: E402


def load(args: argparse.Namespace):
    """The predictions frame and the model to calibrate."""
    if args.lm_eval:
        from first_eval.imports.lm_eval import read_lm_eval
        from first_eval.predictions import validate_frame

        frame = validate_frame(read_lm_eval(args.lm_eval).frame)
        return frame, args.model or str(frame["model"].iloc[0])
    path = Path(args.source)
    if path.is_dir():
        path = path / "predictions.parquet"
    return read_predictions(path), args.model or "teacher"


def table(frame, model: str, *, folds: int, seed: int, bins: int) -> tuple[str, list[str]]:
    groups = [g for g in group_predictions(frame) if g.model == model]
    if not groups:
        models = ", ".join(sorted(frame["model"].unique()))
        raise UserError(f"no model {model!r} in the predictions (models: {models})")
    methods = list(CALIBRATORS)
    head = ["dataset", "n", "acc", "ECE raw"] + methods + ["dirichlet acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    notes: list[str] = []
    seconds = dict.fromkeys(methods, 0.0)
    for g in groups:
        ece = lambda p: expected_calibration_error(p, g.labels, n_bins=bins)  # noqa: E731
        cells = [g.dataset, str(g.n), f"{accuracy_score(g.probs, g.labels):.3f}", f"{ece(g.probs):.4f}"]
        dirichlet_acc = "n/a"
        for m in methods:
            t = time.perf_counter()
            try:
                res = cross_fit(m, g.probs, g.labels, n_folds=folds, seed=seed, n_options=g.n_options)
            except UserError as exc:
                notes.append(f"{m} on {g.dataset}: {exc}")
                cells.append("n/a")
                continue
            seconds[m] += time.perf_counter() - t
            cells.append(f"{ece(res.probs):.4f}")
            if m == "dirichlet":
                dirichlet_acc = f"{accuracy_score(res.probs, g.labels):.3f}"
        lines.append("| " + " | ".join(cells + [dirichlet_acc]) + " |")
    timing = ", ".join(f"{m} {s:.1f}s" for m, s in seconds.items())
    notes.append(f"cross-fitting time (all datasets, {folds} folds each): {timing}")
    return "\n".join(lines), notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", help="A run directory (predictions.parquet) or a predictions file.")
    ap.add_argument("--lm-eval", nargs="+", metavar="PATH", help="Read lm-eval output instead.")
    ap.add_argument("--model", help="Model to calibrate (default: teacher; with --lm-eval its own).")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bins", type=int, default=10)
    args = ap.parse_args(argv)
    if not args.source and not args.lm_eval:
        ap.error("give a run directory, a predictions file, or --lm-eval PATH")
    try:
        frame, model = load(args)
        text, notes = table(frame, model, folds=args.folds, seed=args.seed, bins=args.bins)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = " ".join(args.lm_eval) if args.lm_eval else args.source
    print(f"Cross-fitted top-label ECE ({args.bins} equal-width bins) of `{model}` from `{where}`, "
          f"{args.folds} folds, seed {args.seed}.\n")
    print(text)
    print()
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
