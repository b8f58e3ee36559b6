"""first_eval.plots: pure figure builders — right traces, right numbers, escaped text, empty inputs."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from first_eval import plots
from first_eval.calibration import reliability_diagram


@pytest.fixture(scope="module")
def forecasts():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, size=300)
    return probs, labels


def _roundtrip(fig: go.Figure) -> dict:
    """Figures must serialize (what st.plotly_chart and write_html do)."""
    return json.loads(fig.to_json())


def test_model_colors_are_stable_and_distinct():
    colors = plots.model_colors(["a", "b", "a", "c"])
    assert list(colors) == ["a", "b", "c"]
    assert len(set(colors.values())) == 3
    assert plots.model_colors(["a", "b"]) == {k: colors[k] for k in ("a", "b")}


def test_reliability_figure_points_and_counts_match_the_data(forecasts):
    probs, labels = forecasts
    d = reliability_diagram(probs, labels, n_bins=10, scheme="width")
    fig = plots.reliability_figure({"m1": d, "m2": d}, ece={"m1": 0.1234})
    _roundtrip(fig)
    lines = [t for t in fig.data if t.type == "scatter" and t.name and t.name.startswith("m1")]
    assert len(lines) == 1 and "ECE 0.123" in lines[0].name
    counts = np.asarray(d.counts)
    nonempty = counts > 0
    np.testing.assert_allclose(lines[0].x, np.asarray(d.mean_confidence)[nonempty])
    np.testing.assert_allclose(lines[0].y, np.asarray(d.accuracy)[nonempty])
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2
    np.testing.assert_allclose(bars[0].y, counts)
    assert sum(bars[0].y) == len(labels)


def test_reliability_figure_equal_mass_and_without_counts(forecasts):
    probs, labels = forecasts
    d = reliability_diagram(probs, labels, n_bins=5, scheme="mass")
    fig = plots.reliability_figure({"m": d}, show_counts=False)
    assert not [t for t in fig.data if t.type == "bar"]
    assert fig.layout.yaxis.title.text == "accuracy"


def test_confidence_histogram_shares_sum_to_one(forecasts):
    probs, _ = forecasts
    fig = plots.confidence_histogram_figure({"m": probs.max(axis=1)}, n_bins=10)
    y = np.asarray(fig.data[0].y)[::2]  # step line: each bin's share appears twice
    assert y.sum() == pytest.approx(1.0)


RESULTS = [
    {"model": "base", "dataset": "ood", "accuracy": 0.3, "ece": 0.05, "ece_ci": [0.03, 0.08],
     "accuracy_ci": [0.25, 0.35]},
    {"model": "base", "dataset": "id", "accuracy": 0.5, "ece": 0.04, "ece_ci": [0.02, 0.06],
     "accuracy_ci": [0.45, 0.55]},
    {"model": "teacher", "dataset": "id", "accuracy": 0.9, "ece": 0.10, "ece_ci": [0.08, 0.12],
     "accuracy_ci": [0.85, 0.95]},
    {"model": "teacher", "dataset": "ood", "accuracy": 0.4, "ece": 0.30, "ece_ci": [0.25, 0.35],
     "accuracy_ci": [0.35, 0.45]},
]


def test_ece_accuracy_scatter_has_ci_error_bars():
    fig = plots.ece_accuracy_figure(RESULTS)
    _roundtrip(fig)
    base = next(t for t in fig.data if t.name == "base")
    assert list(base.x) == [0.3, 0.5] and list(base.y) == [0.05, 0.04]
    np.testing.assert_allclose(base.error_y.array, [0.03, 0.02])
    np.testing.assert_allclose(base.error_y.arrayminus, [0.02, 0.02])
    assert fig.layout.yaxis.title.text == "ECE"


def test_id_ood_orders_datasets_by_role():
    fig = plots.id_ood_figure(RESULTS, {"ood": "far-ood", "id": "in-domain"})
    teacher = next(t for t in fig.data if t.name == "teacher")
    assert list(teacher.x) == ["id<br>(in-domain)", "ood<br>(far-ood)"]
    assert list(teacher.y) == [0.10, 0.30]
    assert list(fig.layout.xaxis.categoryarray) == ["id<br>(in-domain)", "ood<br>(far-ood)"]


def test_item_confidence_figure_partitions_items():
    rng = np.random.default_rng(1)
    ca, cb = rng.random(50), rng.random(50)
    ra, rb = rng.random(50) > 0.5, rng.random(50) > 0.5
    fig = plots.item_confidence_figure(ca, cb, ra, rb, model_a="A", model_b="B", hover=[f"q{i}" for i in range(50)])
    groups = [t for t in fig.data if t.type == "scattergl"]
    assert sum(len(t.x) for t in groups) == 50
    both = next(t for t in groups if t.name.startswith("both right"))
    assert len(both.x) == int((ra & rb).sum())


def test_paired_differences_accepts_objects_and_metrics_json_dicts():
    from first_eval.bootstrap import PairedDifference

    obj = {"ece": PairedDifference("ece", -0.02, -0.03, -0.01, 0.001, 100)}
    dct = {"ece": {"difference": -0.02, "ci": [-0.03, -0.01], "p_value": 0.001}}
    for diffs in (obj, dct):
        fig = plots.paired_differences_figure(diffs, model_a="first", model_b="ce")
        assert list(fig.data[0].x) == [-0.02]
        np.testing.assert_allclose(fig.data[0].error_x.array, [0.01])
        assert fig.data[0].marker.color[0] == "#D55E00"  # CI excludes 0


def test_trajectory_one_panel_per_metric_sorted_by_step():
    rows = [{"model": "t", "dataset": "d", "step": s, "ece": e, "accuracy": a}
            for s, e, a in ((20, 0.2, 0.7), (0, 0.1, 0.3), (40, 0.3, 0.9))]
    fig = plots.trajectory_figure(rows, metrics=("ece", "accuracy"))
    assert len(fig.data) == 2
    assert list(fig.data[0].x) == [0, 20, 40] and list(fig.data[0].y) == [0.1, 0.2, 0.3]
    assert plots.trajectory_figure(rows, metrics=("nll",)).layout.annotations  # empty: a message


def test_temperature_grid_marks_the_chosen_c():
    entry = {"model": "teacher", "method": "first", "temperature": 0.3, "ece_before": 0.2, "ece_after": 0.05,
             "grid": [[0.5, 0.1], [0.1, 0.15], [0.3, 0.05]]}
    other = {**entry, "method": "temperature", "temperature": 1.5, "ece_after": 0.07,
             "grid": [[1.0, 0.2], [1.5, 0.07], [2.0, 0.1]]}
    fig = plots.temperature_grid_figure([entry, other])
    assert list(fig.data[0].x) == [0.1, 0.3, 0.5]
    star = fig.data[1]
    assert list(star.x) == [0.3] and list(star.y) == [0.05]
    assert list(fig.data[2].y) == [0.2, 0.2]  # ECE before, dotted
    assert fig.data[3].xaxis == "x2"  # the other method gets its own panel (different scale)
    assert [a.text for a in fig.layout.annotations] == ["first", "temperature"]


def test_knowledge_figures_from_summarize():
    from first_eval.knowledge import TopK, summarize

    p = np.array([[0.6, 0.2, 0.1, 0.05, 0.02, 0.01], [0.9, 0.05, 0.02, 0.01, 0.01, 0.005]])
    plogp = (p * np.log(p)).sum(axis=1)  # the whole mass is in the top 6 here... nearly
    s = summarize(TopK(p, plogp, vocab_size=1000), positions="response")
    doc = {"models": [{"model": "teacher", "summaries": [s]}]}
    summaries = plots.knowledge_summaries(doc)
    assert list(summaries) == ["teacher · response positions"]
    fig = plots.mass_at_k_figure(summaries)
    line = next(t for t in fig.data if t.mode == "lines+markers")
    np.testing.assert_allclose(line.y, s["mass_mean"])
    kl = plots.kl_bytes_figure(summaries)
    assert kl.layout.yaxis2.type == "log"
    assert any("2,000 B" in a.text for a in kl.layout.annotations)
    plots.mass_distribution_figure(summaries)


def test_text_from_run_files_is_escaped():
    nasty = '<a href="javascript:alert(1)">x</a> %{y}'
    fig = plots.ece_accuracy_figure([{"model": nasty, "dataset": "<b>d</b>", "accuracy": 0.5, "ece": 0.1}])
    blob = fig.to_json()
    assert "<a href" not in blob and "<b>d</b>" not in blob and "%{y}" not in fig.data[0].name
    assert fig.data[0].name == plots.escape_text(nasty)
    fig = plots.item_confidence_figure([0.5], [0.6], [True], [False], model_a="<i>a</i>", model_b="b",
                                       hover=["<img src=x onerror=alert(1)>"])
    assert "<img" not in fig.to_json() and "<i>a</i>" not in fig.to_json()


@pytest.mark.parametrize("builder", [
    lambda: plots.reliability_figure({}),
    lambda: plots.confidence_histogram_figure({}),
    lambda: plots.ece_accuracy_figure([]),
    lambda: plots.id_ood_figure([], {}),
    lambda: plots.item_confidence_figure([], [], [], [], model_a="a", model_b="b"),
    lambda: plots.paired_differences_figure({}, model_a="a", model_b="b"),
    lambda: plots.trajectory_figure([]),
    lambda: plots.temperature_grid_figure([]),
    lambda: plots.mass_at_k_figure({}),
    lambda: plots.mass_distribution_figure({}),
    lambda: plots.kl_bytes_figure({}),
])
def test_empty_inputs_give_a_figure_with_a_message(builder):
    fig = builder()
    assert isinstance(fig, go.Figure)
    assert fig.layout.annotations and fig.layout.annotations[0].text


def test_no_io_or_streamlit_in_plots():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(plots))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
    assert imported <= {"__future__", "math", "collections", "typing", "numpy", "plotly"}
    assert "open(" not in inspect.getsource(plots)


def test_baselines_figure_reads_model_minus_baseline_whichever_side_it_was_compared_on():
    from first_eval.plots import baselines_figure

    comps = [
        {"model_a": "student-first", "model_b": "student-ce", "dataset": "id",
         "differences": {"accuracy": {"difference": 0.05, "ci": [0.01, 0.09], "p_value": 0.01, "p_holm": 0.02},
                         "ece": {"difference": -0.03, "ci": [-0.05, -0.01], "p_value": 0.02}}},
        {"model_a": "student-topk", "model_b": "student-first", "dataset": "id",
         "differences": {"accuracy": {"difference": 0.04, "ci": [0.00, 0.08], "p_value": 0.05},
                         "ece": {"difference": 0.02, "ci": [-0.01, 0.05], "p_value": 0.2}}},
        {"model_a": "teacher", "model_b": "base", "dataset": "id", "differences": {}},
    ]
    fig = baselines_figure(comps, "student-first")
    acc, ece = fig.data
    assert list(acc.y) == ["student-ce · id", "student-topk · id"]  # the teacher row is not FIRST's
    np.testing.assert_allclose(acc.x, [0.05, -0.04])
    np.testing.assert_allclose(ece.x, [-0.03, -0.02])
    # The flipped row's CI is negated and swapped: [-0.08, -0.00].
    np.testing.assert_allclose(acc.error_x.arrayminus[1], 0.04)
    np.testing.assert_allclose(acc.error_x.array[1], 0.04)
    assert "no paired comparison" in baselines_figure(comps, "nobody").layout.annotations[0].text
