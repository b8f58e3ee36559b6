"""The dashboard's live numbers (first_dashboard.compute) against the run's own metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from first_eval import rundir
from first_eval.fileio import nan_to_none, write_json_atomic
from first_eval.predictions import write_predictions

try:
    from first_eval.results import compute_results
except ImportError:  # before it moved out of the CLI
    from first_eval.cli.metrics import compute_results
try:
    from first_eval.results import compute_comparisons
except ImportError:
    from first_eval.cli.metrics import compute_comparisons

OPTION_COUNTS = (2, 4, 5)
N_RESAMPLES = 60


def make_ragged_run(directory: Path, *, n_items: int = 90, seed: int = 0) -> Path:
    """A run whose one dataset mixes 2-, 4- and 5-option items (zero-padded to 5 when grouped)."""
    rng = np.random.default_rng(seed)
    n_opts = np.resize(OPTION_COUNTS, n_items)
    labels = (rng.random(n_items) * n_opts).astype(np.int64)
    ids = [f"q{i:03d}" for i in range(n_items)]
    frames = []
    for model, sharp in (("a", 1.0), ("b", 3.0)):
        probs = [rng.dirichlet(np.full(k, 1.0 / sharp)) for k in n_opts]
        frames.append(pd.DataFrame({"model": model, "dataset": "mixed", "id": ids,
                                    "probs": [p.tolist() for p in probs], "label": labels, "n_options": n_opts}))
    table = pd.concat(frames, ignore_index=True)
    directory.mkdir(parents=True)
    write_predictions(table, directory / rundir.PREDICTIONS_FILE)
    results = compute_results(table, n_bins=10, scheme="width", bootstrap=0, seed=0)
    comparisons = compute_comparisons(table, "b", "a", n_bins=10, scheme="width", bootstrap=N_RESAMPLES, seed=0)
    write_json_atomic(directory / rundir.METRICS_FILE, nan_to_none({"results": results, "comparisons": comparisons}))
    rundir.write_run_json(directory, {"study": "ragged", "models": [{"name": "a"}, {"name": "b"}],
                                      "datasets": [{"name": "mixed", "role": "in-domain", "n": n_items}]})
    return directory


def test_dashboard_metrics_equal_metrics_json_on_mixed_option_counts(tmp_path):
    from first_dashboard.compute import paired, reliability, suite
    from first_dashboard.data import discover, group_arrays

    run = make_ragged_run(tmp_path / "reports" / "ragged")
    (ref,), refused = discover(run.parent)
    assert not refused
    assert set(group_arrays(*ref.key, "a", "mixed").n_options) == set(OPTION_COUNTS)
    stored = json.loads((run / rundir.METRICS_FILE).read_text())
    for row in stored["results"]:
        live = suite(ref, row["model"], row["dataset"], 10, "width")
        shared = set(live) & set(row)
        assert {"classwise_ece", "brier_reliability", "brier_resolution", "brier_uncertainty"} <= shared
        for key in shared:
            assert live[key] == pytest.approx(row[key], abs=1e-12, rel=0), key
        _, ece = reliability(ref, row["model"], row["dataset"], 10, "width")
        assert ece == pytest.approx(row["ece"], abs=1e-12, rel=0)

    (comparison,) = stored["comparisons"]
    diffs = paired(ref, "b", ref, "a", "mixed", N_RESAMPLES, 10, "width").set_index("metric")
    assert {"classwise_ece", "brier_reliability"} <= set(diffs.index) <= set(comparison["differences"])
    for name, d in comparison["differences"].items():
        live = diffs.loc[name]
        assert (live["difference"], live["ci_low"], live["ci_high"], live["p_value"]) == pytest.approx(
            (d["difference"], *d["ci"], d["p_value"]), abs=1e-12, rel=0, nan_ok=True), name


def test_paired_refuses_groups_that_disagree_on_option_counts(tmp_path):
    from first_dashboard.compute import paired
    from first_dashboard.data import discover

    run = make_ragged_run(tmp_path / "reports" / "ragged")
    table = pd.read_parquet(run / rundir.PREDICTIONS_FILE)
    first_b = table.index[(table["model"] == "b") & (table["n_options"] == 4) & (table["label"] < 2)][0]
    table.at[first_b, "probs"] = [0.5, 0.5]  # the same item, now with 2 options for model b only
    table.at[first_b, "n_options"] = 2
    write_predictions(table, run / rundir.PREDICTIONS_FILE)
    (ref,), _ = discover(run.parent)
    with pytest.raises(ValueError, match="option count"):
        paired(ref, "b", ref, "a", "mixed", N_RESAMPLES, 10, "width")
