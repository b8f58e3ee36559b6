"""A run directory from a predictions table alone — no model, no study: ``first-eval report
--predictions FILE --out DIR``.

It holds what a study's run directory holds (:mod:`first_eval.rundir`) except the trajectory,
knowledge and calibration files: ``predictions.parquet`` (the validated table), ``metrics.json``
(one row per model arm and dataset with bootstrap CIs, the seed replicas' own rows, and paired
comparisons of every pair of models on the items they share, Holm-adjusted over each pair's
datasets), ``run.json`` (``source`` names the file and its content digest) and the report, so the
dashboard reads it like any run. Models named ``NAME@SEED`` are seed replicas of ``NAME``, as in a
study.

The report leads with findings instead of the paper's claims (:func:`findings`): per dataset,
the models' accuracy, ECE and confidence − accuracy; per pair of models, the accuracy and ECE
differences that are significant (Holm-adjusted p < 0.05).

NumPy and pandas only: nothing here imports torch.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from first_eval import rundir
from first_eval.errors import UserError
from first_eval.fileio import write_json_atomic
from first_eval.provenance import machine, package_versions
from first_eval.report.claims import ALPHA, Claim, interval, num, p_of

__all__ = ["findings", "write_predictions_run"]

SOURCE_KIND = "predictions"
VERSIONED = ("first-toolkit", "numpy", "pandas", "scikit-learn", "plotly")
COMPARED_METRICS = ("accuracy", "ece", "debiased_ece", "smooth_ece")


def _versions() -> dict[str, str]:
    return package_versions(VERSIONED)


def _environment() -> dict[str, Any]:
    return {**machine(), **{k: v for k, v in _versions().items() if k != "python"}}


def _pairs(arms: list[str], compare: Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if compare:
        unknown = sorted({a for pair in compare for a in pair} - set(arms))
        if unknown:
            raise UserError(f"--compare: no model {', '.join(repr(u) for u in unknown)} in the predictions "
                            f"(models: {', '.join(arms)})")
        return [tuple(p) for p in compare]
    return list(itertools.combinations(arms, 2))


def write_predictions_run(predictions: str | os.PathLike | Sequence[str | os.PathLike], work: str | os.PathLike, *, bins: int = 10,
                          scheme: str = "width", bootstrap: int = 1000, seed: int = 0,
                          roles: dict[str, str] | None = None, name: str | None = None,
                          compare: Sequence[tuple[str, str]] | None = None, renormalize: bool = False,
                          shown_as: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write a run directory for ``predictions`` into ``work`` (an empty or new directory).

    Parameters
    ----------
    predictions : path or sequence of paths
        Predictions tables (``.jsonl`` or ``.parquet``), read together (an item of one model and
        dataset may appear in one of them only).
    work : path
        Where to write; the caller moves it into place (the command writes a staging directory
        and publishes it whole).
    bins, scheme, bootstrap, seed
        As ``first-eval metrics``; ``bootstrap`` resamples for the CIs and the paired tests.
    roles : dict, optional
        Dataset → role (``in-domain``, ``near-ood``, ``far-ood``, ``validation``); default none.
    name : str, optional
        The run's title (default: the file's stem).
    compare : sequence of (str, str), optional
        The pairs to compare (default: every pair of models).
    renormalize : bool
        Divide probability rows by their sum instead of rejecting sums off 1.
    shown_as : path, optional
        The directory the report names (the final location of ``work``).

    Returns
    -------
    dict
        ``{"models", "datasets", "comparisons", "skipped"}`` counts and notes for the command.
    """
    from first_eval.arms import arm_of, compute_arm_comparisons, compute_arm_results, holm_adjust
    from first_eval.digest import file_digest
    from first_eval.predictions import read_predictions, write_predictions
    from first_eval.report import build_report
    from first_eval.results import compute_results

    import pandas as pd

    from first_eval.digest import content_hash
    from first_eval.predictions import validate_frame

    sources = [Path(p) for p in ([predictions] if isinstance(predictions, (str, os.PathLike)) else predictions)]
    if not sources:
        raise UserError("no predictions table given")
    frames = [read_predictions(p, renormalize=renormalize) for p in sources]
    frame = frames[0] if len(frames) == 1 else validate_frame(
        pd.concat(frames, ignore_index=True), source=" + ".join(str(p) for p in sources))
    if bootstrap < 1:
        raise UserError("--bootstrap must be at least 1 for a report (its CIs and paired tests)")
    roles = dict(roles or {})
    datasets = list(dict.fromkeys(frame["dataset"]))
    unknown = sorted(set(roles) - set(datasets))
    if unknown:
        raise UserError(f"--role: no dataset {', '.join(repr(u) for u in unknown)} in the predictions "
                        f"(datasets: {', '.join(datasets)})")
    out = Path(work)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(frame, out / rundir.PREDICTIONS_FILE)
    results = compute_arm_results(frame, n_bins=bins, scheme=scheme, bootstrap=bootstrap, seed=seed)
    seeded = frame[frame["model"].astype(str).str.contains("@", regex=False)]
    replicas = compute_results(seeded, n_bins=bins, scheme=scheme, bootstrap=0, seed=seed) if len(seeded) else []
    arms = list(dict.fromkeys(arm_of(m) for m in frame["model"]))
    comparisons: list[dict] = []
    skipped: list[str] = []
    for a, b in _pairs(arms, compare):
        try:
            comparisons += compute_arm_comparisons(frame, a, b, n_bins=bins, scheme=scheme, bootstrap=bootstrap,
                                                   seed=seed)
        except UserError as exc:
            skipped.append(f"{a} − {b}: {exc}")
    holm_adjust([c for c in comparisons if roles.get(c["dataset"]) != "validation"], metrics=COMPARED_METRICS)
    digests = [file_digest(p) for p in sources]
    digest = digests[0] if len(digests) == 1 else content_hash(digests)
    versions = _versions()
    edges = np.linspace(0.0, 1.0, bins + 1).tolist() if scheme == "width" else None
    shown_file = rundir.PREDICTIONS_FILE
    write_json_atomic(out / rundir.METRICS_FILE, {
        "results": results, "replicas": replicas, "comparisons": comparisons, "roles": roles,
        "environment": _environment(), "skipped_comparisons": skipped,
        "metadata": {"study": name or "+".join(p.stem for p in sources), "config_hash": digest, "seed": seed, "bins": bins,
                     "scheme": scheme, "bin_edges": edges, "bootstrap": bootstrap, "versions": versions,
                     "command": f"first-eval metrics {shown_file} --json --arms --bins {bins} --scheme {scheme} "
                                f"--bootstrap {bootstrap} --seed {seed}"},
    })
    counts = frame.groupby("dataset", sort=False)["id"].nunique()
    readings = sorted(set(frame["reading"].dropna().astype(str))) if "reading" in frame.columns else []
    rundir.write_run_json(out, {
        "study": name or "+".join(p.stem for p in sources),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"kind": SOURCE_KIND, "path": ", ".join(str(p) for p in sources), "digest": digest,
                   "files": [{"path": str(p), "digest": d} for p, d in zip(sources, digests)],
                   "readings": readings},
        "config": {}, "config_hash": digest, "seed": seed, "versions": versions,
        "models": [{"name": m, "kind": SOURCE_KIND, "spec": ""} for m in dict.fromkeys(frame["model"])],
        "datasets": [{"name": d, "source": d, "role": roles.get(d, ""), "split": None, "n": int(counts[d])}
                     for d in datasets],
        "stages": [],
    })
    build_report(out, shown_as=shown_as)
    return {"models": len(arms), "datasets": len(datasets), "comparisons": len(comparisons), "skipped": skipped}


# ------------------------------------------------------------------------------ findings
def _gap_word(row: dict) -> str:
    ci = row.get("confidence_gap_ci")
    if ci and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
        if ci[0] > 0:
            return "over-confident"
        if ci[1] < 0:
            return "under-confident"
        return "no confidence gap beyond noise"
    gap = row.get("confidence_gap")
    if isinstance(gap, (int, float)):
        return "over-confident" if gap > 0 else "under-confident"
    return "confidence gap not measured"


def _model_text(row: dict) -> str:
    return (f"{row['model']}: accuracy {num(row.get('accuracy'), signed=False)} "
            f"{interval(row.get('accuracy_ci'), signed=False)}, ECE {num(row.get('ece'), signed=False)} "
            f"{interval(row.get('ece_ci'), signed=False)}, conf − acc {num(row.get('confidence_gap'))} "
            f"{interval(row.get('confidence_gap_ci'))} ({_gap_word(row)})").replace("  ", " ")


def findings(results: list[dict], comparisons: list[dict], roles: dict[str, str]) -> list[Claim]:
    """The report's lead for a run made from predictions: one finding per dataset (each model's
    accuracy, ECE and confidence − accuracy with CIs; the verdict names the lowest-ECE model, or
    for one model whether it is over- or under-confident), then one per pair of models (the
    significant accuracy and ECE differences, Holm-adjusted, over the non-validation datasets)."""
    out: list[Claim] = []
    by_dataset: dict[str, list[dict]] = {}
    for r in results:
        if roles.get(r["dataset"]) != "validation":
            by_dataset.setdefault(r["dataset"], []).append(r)
    for dataset, rows in by_dataset.items():
        role = f", {roles[dataset]}" if roles.get(dataset) else ""
        n = max(int(r.get("n") or 0) for r in rows)
        if len(rows) == 1:
            verdict = _gap_word(rows[0])
            key = f"ECE {num(rows[0].get('ece'), signed=False)} {interval(rows[0].get('ece_ci'), signed=False)}"
        else:
            best = min(rows, key=lambda r: r.get("ece") if isinstance(r.get("ece"), (int, float)) else np.inf)
            verdict = f"lowest ECE: {best['model']}"
            key = f"ECE {num(best.get('ece'), signed=False)} {interval(best.get('ece_ci'), signed=False)}"
        out.append(Claim(f"{dataset} ({n} items{role})", verdict, "; ".join(_model_text(r) for r in rows), key))
    pairs: dict[tuple[str, str], list[dict]] = {}
    for c in comparisons:
        if roles.get(c["dataset"]) != "validation":
            pairs.setdefault((c["model_a"], c["model_b"]), []).append(c)
    for (a, b), rows in pairs.items():
        clauses, wins_a, wins_b = [], 0, 0
        for c in rows:
            for metric, label in (("accuracy", "accuracy"), ("ece", "ECE")):
                d = (c.get("differences") or {}).get(metric)
                if not d:
                    continue
                p, p_name = p_of(d)
                sig = p is not None and p < ALPHA
                better_a = (d["difference"] > 0) if metric == "accuracy" else (d["difference"] < 0)
                if sig:
                    wins_a += better_a
                    wins_b += not better_a
                clauses.append(f"{c['dataset']} {label} {num(d.get('difference'))} {interval(d.get('ci'))}"
                               f" ({p_name} {num(p, 3, signed=False)}{', significant' if sig else ''})")
        if wins_a and wins_b:
            verdict = "mixed"
        elif wins_a or wins_b:
            verdict = f"better: {a if wins_a else b}"
        else:
            verdict = "within noise"
        mdes = [((c.get("differences") or {}).get("ece") or {}).get("mde") for c in rows]
        mdes = [m for m in mdes if isinstance(m, (int, float))]
        key = f"ECE MDE {num(float(np.median(mdes)), signed=False)}" if mdes else ""
        out.append(Claim(f"{a} against {b} ({a} − {b}, same items)", verdict, "; ".join(clauses), key))
    return out
