"""What a study writes into its (staging) run directory: the predictions table, the metrics, the
optional trajectory / knowledge / calibration files, ``run.json`` and the report
(the layout of :mod:`first_eval.rundir`).

The predictions table and its metrics (with the bootstrap CIs and paired tests) are the cached
stage ``metrics`` (:func:`metrics_stage`), keyed by the content of the predictions they read;
``metrics.json``'s metadata, ``run.json`` and the report are written afresh on every run."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np

from first_eval import provenance, rundir
from first_eval.digest import file_digest
from first_eval.faults import crash_point
from first_eval.fileio import atomic_path, write_json_atomic
from first_eval.study.cache import Stage
from first_eval.study.stages import StudyState

__all__ = ["PACKAGES", "metrics_stage", "package_versions", "write_outputs", "write_report"]

PACKAGES = ("first-toolkit", "torch", "transformers", "accelerate", "numpy", "pandas", "scikit-learn",
            "netcal", "relplot", "plotly", "streamlit")


def package_versions() -> dict[str, str]:
    return provenance.package_versions(PACKAGES)


def metrics_stage(state: StudyState) -> Stage:
    """The study's predictions table and its metrics, as the cached stage ``metrics``.

    The stage directory holds ``predictions.parquet`` (every (model, dataset) predictions file of
    the study, named as the study names them) and ``metrics.json`` (``results``, ``comparisons``
    and the items scored per dataset). Its key holds the content digest of each predictions file
    it reads with the model and dataset names it gives them, the metric settings (bins, scheme,
    bootstrap resamples, seed) and the comparisons, so a re-run with none of those changed reads
    the bootstrap's results instead of resampling again.
    """
    cfg, mc = state.cfg, state.cfg.metrics
    tables = [[model, dataset, file_digest(path)] for (model, dataset), path in state.predictions.items()]
    validation = sorted(d.display for d in state.datasets if d.role == "validation")
    st = state.stage("metrics", {"tables": tables, "bins": mc.bins, "scheme": mc.scheme, "validation": validation,
                                 "bootstrap": mc.bootstrap, "seed": cfg.seed,
                                 "comparisons": [list(pair) for pair in cfg.comparisons]})

    def compute(st: Stage) -> dict:
        import pandas as pd

        from first_eval.arms import compute_arm_comparisons, compute_arm_results, holm_adjust
        from first_eval.predictions import read_predictions, write_predictions
        from first_eval.results import compute_results

        frames = []
        for (model, dataset), path in state.predictions.items():
            f = read_predictions(path)
            f["model"], f["dataset"] = model, dataset
            frames.append(f)
        table = st.path / rundir.PREDICTIONS_FILE
        write_predictions(pd.concat(frames, ignore_index=True), table)
        crash_point("metrics")
        frame = read_predictions(table)  # metrics from exactly what is on disk
        # One row per arm (a model's seed replicas `name@seed` together: seed and item variance),
        # the replicas' own rows for the seed spread, and paired comparisons of arms with Holm's
        # correction over the datasets of each (pair, metric) family.
        results = compute_arm_results(frame, n_bins=mc.bins, scheme=mc.scheme, bootstrap=mc.bootstrap, seed=cfg.seed)
        seeded = frame[frame["model"].str.contains("@", regex=False)]
        replicas = (compute_results(seeded, n_bins=mc.bins, scheme=mc.scheme, bootstrap=0, seed=cfg.seed)
                    if len(seeded) else [])
        comparisons = []
        digests = {(model, dataset): digest for model, dataset, digest in tables}
        for a, b in cfg.comparisons:
            if _identical(cfg, digests, a, b):
                continue  # the same predictions (FIRST reduced to top-k KD): nothing to compare
            comparisons += compute_arm_comparisons(frame, a, b, n_bins=mc.bins, scheme=mc.scheme,
                                                   bootstrap=mc.bootstrap or 1000, seed=cfg.seed)
        # Holm's family: the datasets a verdict reads (validation rows are fit data, not evidence).
        holm_adjust([c for c in comparisons if c["dataset"] not in validation],
                    metrics=("accuracy", "ece", "debiased_ece", "smooth_ece"))
        items = {str(k): int(v) for k, v in frame.groupby("dataset", sort=False)["id"].nunique().items()}
        write_json_atomic(st.path / rundir.METRICS_FILE,
                          {"results": results, "replicas": replicas, "comparisons": comparisons, "items": items})
        return {"rows": len(frame)}

    return state.ensure(st, compute)


def _identical(cfg, digests: dict, a: str, b: str) -> bool:
    """Whether arms ``a`` and ``b`` have byte-identical predictions on every dataset."""
    ra, rb = cfg.replicas(a), cfg.replicas(b)
    datasets = {d for _, d in digests}
    return len(ra) == len(rb) and all(digests.get((x, d)) == digests.get((y, d))
                                      for x, y in zip(ra, rb) for d in datasets)


def environment() -> dict:
    """What the numbers were computed on: CPU or GPU model, threads, library versions and the
    determinism settings (same inputs give the same numbers on one machine; other machines'
    kernels may differ in the last bits)."""
    import torch

    env = {**provenance.machine(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "cuda": torch.version.cuda,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
           "cudnn_deterministic": bool(torch.backends.cudnn.deterministic)}
    for name in ("transformers", "accelerate", "numpy"):
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return env


def write_outputs(state: StudyState, work: Path) -> None:
    """The predictions table, ``metrics.json``, the optional files and ``run.json`` into ``work``."""
    cfg, mc = state.cfg, state.cfg.metrics
    st = metrics_stage(state)
    with atomic_path(work / rundir.PREDICTIONS_FILE) as tmp:  # the run's own copy, never a link into the cache
        shutil.copyfile(st.path / rundir.PREDICTIONS_FILE, tmp)
    computed = json.loads((st.path / rundir.METRICS_FILE).read_text())
    versions = package_versions()
    edges = np.linspace(0.0, 1.0, mc.bins + 1).tolist() if mc.scheme == "width" else None
    write_json_atomic(work / rundir.METRICS_FILE, {
        "results": computed["results"], "replicas": computed.get("replicas", []),
        "comparisons": computed["comparisons"], "roles": {d.display: d.role for d in state.datasets},
        "environment": environment(),
        "reduced": sorted(state.reduced), "selected": {k: list(v) for k, v in state.selected.items()},
        "metadata": {"study": cfg.name, "config_hash": cfg.hash(), "seed": cfg.seed,
                     "bins": mc.bins, "scheme": mc.scheme, "bin_edges": edges, "bootstrap": mc.bootstrap,
                     "versions": versions,
                     "command": f"first-eval metrics {rundir.PREDICTIONS_FILE} --json --arms --bins {mc.bins} "
                                f"--scheme {mc.scheme} --bootstrap {mc.bootstrap} --seed {cfg.seed}"},
    })
    if state.trajectory:
        write_json_atomic(work / rundir.TRAJECTORY_FILE, state.trajectory)
    if state.knowledge:
        write_json_atomic(work / rundir.KNOWLEDGE_FILE, state.knowledge)
    if state.calibration:
        write_json_atomic(work / rundir.CALIBRATION_FILE, state.calibration)
    counts = computed["items"]
    rundir.write_run_json(work, {
        "study": cfg.name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(), "config_hash": cfg.hash(), "seed": cfg.seed,
        "versions": versions,
        "models": [{"name": m.name, "kind": m.kind, "spec": state.model_paths.get(m.name, m.spec)}
                   for m in cfg.models],
        "datasets": [{"name": d.display, "source": d.name, "role": d.role, "split": d.split,
                      "n": int(counts.get(d.display, 0))} for d in state.datasets],
        "stages": [{"stage": e.stage, "computed": e.computed} for e in state.events],
    })


def write_report(work: Path, out: Path) -> None:
    from first_eval.report import build_report

    build_report(work, shown_as=out)
