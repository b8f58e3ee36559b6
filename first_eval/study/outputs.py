"""What a study writes into its (staging) run directory: the predictions table, the metrics, the
optional trajectory / knowledge / calibration files, ``run.json`` and the report
(the layout of :mod:`first_eval.rundir`)."""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from first_eval import rundir
from first_eval.faults import crash_point
from first_eval.fileio import write_json_atomic
from first_eval.study.stages import StudyState

__all__ = ["PACKAGES", "package_versions", "write_outputs", "write_report"]

PACKAGES = ("first-toolkit", "torch", "transformers", "accelerate", "numpy", "pandas", "scikit-learn",
            "netcal", "relplot", "plotly", "streamlit")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_outputs(state: StudyState, work: Path) -> None:
    """The predictions table, ``metrics.json``, the optional files and ``run.json`` into ``work``."""
    import pandas as pd

    from first_eval.predictions import read_predictions, write_predictions
    from first_eval.results import compute_comparisons, compute_results

    cfg = state.cfg
    frames = []
    for (model, dataset), path in state.predictions.items():
        f = read_predictions(path)
        f["model"], f["dataset"] = model, dataset
        frames.append(f)
    frame = pd.concat(frames, ignore_index=True)
    pred_path = work / rundir.PREDICTIONS_FILE
    write_predictions(frame, pred_path)
    crash_point("metrics")
    frame = read_predictions(pred_path)  # metrics from exactly what is on disk
    mc = cfg.metrics
    results = compute_results(frame, n_bins=mc.bins, scheme=mc.scheme, bootstrap=mc.bootstrap, seed=cfg.seed)
    comparisons = []
    for a, b in cfg.comparisons:
        comparisons += compute_comparisons(frame, a, b, n_bins=mc.bins, scheme=mc.scheme,
                                           bootstrap=mc.bootstrap or 1000, seed=cfg.seed)
    edges = np.linspace(0.0, 1.0, mc.bins + 1).tolist() if mc.scheme == "width" else None
    write_json_atomic(work / rundir.METRICS_FILE, {
        "results": results, "comparisons": comparisons,
        "metadata": {"study": cfg.name, "config_hash": cfg.hash(), "seed": cfg.seed,
                     "bins": mc.bins, "scheme": mc.scheme, "bin_edges": edges, "bootstrap": mc.bootstrap,
                     "versions": package_versions(),
                     "command": f"first-eval metrics {rundir.PREDICTIONS_FILE} --json --bins {mc.bins} "
                                f"--scheme {mc.scheme} --bootstrap {mc.bootstrap} --seed {cfg.seed}"},
    })
    if state.trajectory:
        write_json_atomic(work / rundir.TRAJECTORY_FILE, state.trajectory)
    if state.knowledge:
        write_json_atomic(work / rundir.KNOWLEDGE_FILE, state.knowledge)
    if state.calibration:
        write_json_atomic(work / rundir.CALIBRATION_FILE, state.calibration)
    counts = frame.groupby("dataset", sort=False)["id"].nunique().to_dict()
    rundir.write_run_json(work, {
        "study": cfg.name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(), "config_hash": cfg.hash(), "seed": cfg.seed,
        "versions": package_versions(),
        "models": [{"name": m.name, "kind": m.kind, "spec": state.model_paths.get(m.name, m.spec)}
                   for m in cfg.models],
        "datasets": [{"name": d.display, "source": d.name, "role": d.role, "split": d.split,
                      "n": int(counts.get(d.display, 0))} for d in state.datasets],
        "stages": [{"stage": e.stage, "computed": e.computed} for e in state.events],
    })


def write_report(work: Path, out: Path) -> None:
    from first_eval.report import build_report

    build_report(work, shown_as=out)
