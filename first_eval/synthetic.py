"""SYNTHETIC run directories for tests, demos of the dashboard and benchmarks — never a measurement.

:func:`make_synthetic_run` writes a complete, valid run directory (the format of
:mod:`first_eval.rundir`) from seeded random predictions: no model is run and no number in it
says anything about any real model. Its ``run.json`` carries ``"synthetic": true`` and the study
name starts with ``synthetic`` so that nobody mistakes it for a result.

What it writes, so that every view of the dashboard and every figure of the report has data:

- ``predictions.parquet`` — every model on every dataset on the same items; item difficulty is
  shared across models, fine-tuned-looking models are sharper (over-confident) and harder
  datasets (``near-ood``, ``far-ood``) lower accuracy but not confidence;
- ``metrics.json`` — computed by the real metrics core (:func:`first_eval.results.compute_results`,
  the ``first-eval metrics --json`` schema), with bootstrap CIs and paired comparisons;
- ``trajectory.json`` — the metrics of checkpoints interpolated from the first model to the second;
- ``calibration.json`` — ECE on a temperature grid for the second model (FIRST's ``c`` on
  probabilities and ordinary temperature on log-probabilities);
- ``knowledge.json`` — mass@k summaries from synthetic Zipf-like next-token distributions.

Example
-------
>>> import tempfile
>>> run = make_synthetic_run(tempfile.mkdtemp(), models=["a", "b"], datasets=["d"], n_items=20, seed=0,
...                          bootstrap=0)
>>> sorted(p.name for p in run.iterdir())[:3]
['calibration.json', 'knowledge.json', 'metrics.json']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from first_eval import rundir
from first_eval.fileio import write_json_atomic
from first_eval.predictions import write_predictions

__all__ = ["DEFAULT_DATASETS", "DEFAULT_MODELS", "HOSTILE_TEXT", "make_synthetic_run"]

DEFAULT_MODELS = ("base", "teacher", "student-ce", "student-first")
DEFAULT_DATASETS = (("countries", "in-domain"), ("countries-ood", "near-ood"), ("mmlu", "far-ood"))
ROLE_CYCLE = ("in-domain", "near-ood", "far-ood")
ROLE_SHIFT = {"in-domain": 0.0, "near-ood": 0.8, "far-ood": 1.6}  # harder out of domain
SUBJECTS = {
    "in-domain": ("capital", "region", "subregion", "currency"),
    "near-ood": ("demonym", "languages"),
    "far-ood": ("abstract_algebra", "anatomy", "astronomy", "college_biology", "econometrics",
                "high_school_physics", "philosophy", "world_religions"),
}
# Text a browser must never interpret (written into one item when ``hostile_text=True``).
HOSTILE_TEXT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2"> **bold?** $x$'


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _model_params(index: int, n_models: int, rng: np.random.Generator) -> tuple[float, float]:
    """(skill, sharpness): the first model is a weak, modest base; later ones are tuned and sharper."""
    if index == 0:
        return 0.6, 0.9
    skill = 1.6 + 0.5 * rng.random()
    sharpness = 1.2 + 1.2 * rng.random() if index % 2 else 0.8 + 0.4 * rng.random()
    return skill, sharpness


def _probs(skill: float, sharpness: float, shift: float, difficulty: np.ndarray, noise: np.ndarray,
           labels: np.ndarray, n_options: np.ndarray) -> np.ndarray:
    """Option probabilities (n, width) zero-padded past each item's option count."""
    n, width = noise.shape
    logits = noise.copy()
    logits[np.arange(n), labels] += skill - shift - difficulty
    logits = logits * sharpness
    logits[np.arange(width)[None, :] >= n_options[:, None]] = -np.inf
    return _softmax(logits)


def _reshape_top_probs(p: np.ndarray, c: float) -> np.ndarray:
    """FIRST's trustworthy maximization on probabilities: softmax(p / c) over present options."""
    z = np.where(p > 0, p / c, -np.inf)
    return _softmax(z)


def _temperature(p: np.ndarray, t: float) -> np.ndarray:
    z = np.where(p > 0, np.log(np.maximum(p, 1e-12)) / t, -np.inf)
    return _softmax(z)


def make_synthetic_run(
    directory: str | os.PathLike,
    *,
    models: Sequence[str] = DEFAULT_MODELS,
    datasets: Sequence[str | tuple[str, str]] = DEFAULT_DATASETS,
    n_items: int = 200,
    seed: int = 0,
    bootstrap: int = 200,
    n_bins: int = 10,
    n_checkpoints: int = 6,
    hostile_text: bool = False,
    with_prompts: bool = True,
) -> Path:
    """Write a SYNTHETIC run directory and return its path.

    Parameters
    ----------
    directory : path-like
        The run directory to create (its parent is created too).
    models : sequence of str, default=DEFAULT_MODELS
        Model names. The first plays an untuned base, the second a fine-tuned teacher (trajectory
        from the first to the second, temperature grid on the second).
    datasets : sequence of str or (str, str), default=DEFAULT_DATASETS
        Dataset names, or (name, role) pairs; bare names get roles in-domain, near-ood, far-ood in turn.
    n_items : int, default=200
        Items per dataset (every model is scored on the same items).
    seed : int, default=0
        Everything is a function of the seed.
    bootstrap : int, default=200
        Bootstrap resamples for the CIs in ``metrics.json`` (0: none, and no comparisons).
    n_bins : int, default=10
    n_checkpoints : int, default=6
        Trajectory points (0: no ``trajectory.json``).
    hostile_text : bool, default=False
        Put HTML/Markdown (:data:`HOSTILE_TEXT`) into the first item's prompt and subject, to test
        that readers escape dataset text.
    with_prompts : bool, default=True
        Write a ``prompt`` column (False keeps large benchmark runs small).

    Returns
    -------
    Path
    """
    from first_eval.calibration import expected_calibration_error, metric_suite
    from first_eval.results import compute_comparisons, compute_results

    if not models or not datasets or n_items < 2:
        raise ValueError(f"Expected at least one model, one dataset and n_items >= 2, got "
                         f"{len(models)} models, {len(datasets)} datasets, n_items={n_items}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    specs = [(d, ROLE_CYCLE[i % 3]) if isinstance(d, str) else (d[0], d[1]) for i, d in enumerate(datasets)]
    params = [_model_params(i, len(models), rng) for i in range(len(models))]

    frames, groups = [], {}
    for j, (ds, role) in enumerate(specs):
        width = 4 if j % 2 == 0 else 5
        n_opts = np.full(n_items, 4) if j % 2 == 0 else rng.integers(3, 6, size=n_items)
        labels = (rng.random(n_items) * n_opts).astype(np.int64)
        difficulty = rng.normal(0.0, 1.0, size=n_items)
        subjects = np.asarray(SUBJECTS.get(role, ("general",)), dtype=object)
        subject = subjects[rng.integers(0, len(subjects), size=n_items)]
        ids = np.array([f"{ds}-{i:05d}" for i in range(n_items)], dtype=object)
        letters = "ABCDEFGHIJ"
        prompts = None
        if with_prompts:
            prompts = np.array([
                f"[synthetic] Question {i} about {subject[i]} ({ds})?\n"
                + "\n".join(f"{letters[o]}. option {o + 1} of item {i}" for o in range(n_opts[i]))
                + "\nAnswer:" for i in range(n_items)], dtype=object)
            if hostile_text:
                prompts[0] = f"[synthetic] {HOSTILE_TEXT}\nA. yes\nB. no\nC. maybe\nD. never\nAnswer:"
        if hostile_text:
            subject[0] = "<b>subject</b>"
        for m, (name, (skill, sharp)) in enumerate(zip(models, params)):
            noise = rng.gumbel(size=(n_items, width))
            p = _probs(skill, sharp, ROLE_SHIFT.get(role, 1.0), difficulty, noise, labels, n_opts)
            groups[(name, ds)] = (p, labels, n_opts)
            frame = pd.DataFrame({
                "model": name, "dataset": ds, "id": ids,
                "probs": [row[:k].tolist() for row, k in zip(p, n_opts)],
                "label": labels, "subject": subject, "split": "test", "n_options": n_opts,
                "option_mass": np.clip(rng.beta(8, 2, size=n_items), 0.01, 1.0),
            })
            if prompts is not None:
                frame["prompt"] = prompts
            frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    write_predictions(table, root / rundir.PREDICTIONS_FILE)

    results = compute_results(table, n_bins=n_bins, scheme="width", bootstrap=bootstrap, seed=seed)
    comparisons = []
    if bootstrap and len(models) >= 2:
        pairs = [(models[1], models[0])] + ([(models[-1], models[-2])] if len(models) >= 3 else [])
        for a, b in pairs:
            comparisons += compute_comparisons(table, a, b, n_bins=n_bins, scheme="width",
                                               bootstrap=bootstrap, seed=seed)
    write_json_atomic(root / rundir.METRICS_FILE, {
        "results": results, "comparisons": comparisons,
        "metadata": {"synthetic": True, "bins": n_bins, "scheme": "width", "bootstrap": bootstrap,
                     "seed": seed, "bin_edges": np.linspace(0, 1, n_bins + 1).tolist()},
    })

    # Trajectory: checkpoints between the first model (step 0) and the second, on every dataset.
    trajectory = []
    if n_checkpoints and len(models) >= 2:
        (s0, h0), (s1, h1) = params[0], params[1]
        t_rng = np.random.default_rng(seed + 1)
        for ds, role in specs:
            p0, labels, n_opts = groups[(models[0], ds)]
            width = p0.shape[1]
            difficulty = t_rng.normal(0.0, 1.0, size=len(labels))
            noise = t_rng.gumbel(size=(len(labels), width))
            for step_i, frac in enumerate(np.linspace(0.0, 1.0, n_checkpoints)):
                p = _probs(s0 + frac * (s1 - s0), h0 + frac * (h1 - h0), ROLE_SHIFT.get(role, 1.0),
                           difficulty, noise, labels, n_opts)
                suite = metric_suite(p, labels, n_bins=n_bins, scheme="width")
                trajectory.append({"model": models[1], "step": int(step_i * 20), "dataset": ds,
                                   **{k: float(suite[k]) for k in ("accuracy", "ece", "brier", "nll")}})
        write_json_atomic(root / rundir.TRAJECTORY_FILE, trajectory)

    # Temperature grids on the second model's first dataset (a stand-in for a validation split).
    teacher = models[min(1, len(models) - 1)]
    p, labels, _ = groups[(teacher, specs[0][0])]
    calibration = []
    for method, grid_values, fn in (
        ("first", np.round(np.arange(0.02, 1.0001, 0.02), 2), _reshape_top_probs),
        ("temperature", np.round(np.arange(0.5, 3.0001, 0.1), 2), _temperature),
    ):
        grid = [[float(c), float(expected_calibration_error(fn(p, c), labels, n_bins=n_bins))] for c in grid_values]
        best = min(grid, key=lambda g: g[1])
        before = float(expected_calibration_error(p, labels, n_bins=n_bins))
        calibration.append({"model": teacher, "method": method, "temperature": best[0],
                            "ece_before": before, "ece_after": best[1], "grid": grid})
    write_json_atomic(root / rundir.CALIBRATION_FILE, calibration)

    write_json_atomic(root / rundir.KNOWLEDGE_FILE, _synthetic_knowledge(models[: min(2, len(models))], rng))

    rundir.write_run_json(root, {
        "study": "synthetic", "synthetic": True,
        "note": "SYNTHETIC data from first_eval.synthetic.make_synthetic_run; not a measurement.",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seeds": {"synthetic": seed},
        "config": {"models": list(models), "datasets": [d for d, _ in specs], "n_items": n_items},
        "config_hash": f"synthetic-{seed}",
        "models": [{"name": m, "spec": "synthetic", "kind": "synthetic"} for m in models],
        "datasets": [{"name": d, "role": r, "n": n_items} for d, r in specs],
    })
    return root


def _synthetic_knowledge(models: Sequence[str], rng: np.random.Generator) -> dict:
    """knowledge.json with summaries of Zipf-like top-20 distributions (sharper for later models)."""
    from first_eval.knowledge import TopK, summarize

    vocab, max_k, n = 49152, 20, 300
    entries = []
    for i, model in enumerate(models):
        summaries = []
        for positions, sharp in (("response", 2.2 + i), ("all", 1.1 + 0.4 * i)):
            ranks = np.arange(1, vocab + 1, dtype=np.float64)
            alpha = sharp * rng.uniform(0.8, 1.2, size=(n, 1))
            logw = -alpha * np.log(ranks[None, :200])  # the head; the tail is folded into plogp below
            w = np.exp(logw - logw.max(axis=1, keepdims=True))
            head = w / w.sum(axis=1, keepdims=True) * rng.uniform(0.7, 0.999, size=(n, 1))
            rest = 1.0 - head.sum(axis=1)
            tail_p = rest / (vocab - 200)
            plogp = (head * np.log(head)).sum(axis=1) + rest * np.log(np.maximum(tail_p, 1e-300))
            top = TopK(probs=head[:, :max_k], plogp=plogp, vocab_size=vocab)
            summaries.append(summarize(top, positions=positions))
        entries.append({"model": model, "dataset": "synthetic", "summaries": summaries})
    return {"synthetic": True, "max_k": max_k, "models": entries}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m first_eval.synthetic DIR [--items N] [--seed S]``: a SYNTHETIC run to try the dashboard on."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m first_eval.synthetic",
                                     description="Write a SYNTHETIC run directory (made-up numbers, not a "
                                                 "measurement) to try the dashboard and the report on.")
    parser.add_argument("directory", type=Path, help="run directory to write, e.g. reports/synthetic-demo")
    parser.add_argument("--items", type=int, default=200, help="items per dataset (default: 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the CIs (default: 200)")
    args = parser.parse_args(argv)
    path = make_synthetic_run(args.directory, n_items=args.items, seed=args.seed, bootstrap=args.bootstrap)
    print(f"wrote SYNTHETIC run {path}; view it with: streamlit run app/main.py -- --reports {path.parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
