"""The dashboard through streamlit.testing.v1.AppTest: every view, the sidebar, robustness, safety."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from conftest import APP, MODELS
from first_eval.synthetic import HOSTILE_TEXT, make_synthetic_run

VIEWS = ("Overview", "Reliability", "Compare", "Items", "Training", "Concentrated knowledge", "What-if")
TIMEOUT = 120  # seconds; the machine may be busy


def app_for(reports: Path, monkeypatch, view: str | None = None) -> AppTest:
    monkeypatch.setenv("FIRST_REPORTS_DIR", str(reports))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if view:
        at.query_params["view"] = view
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def arr(value) -> np.ndarray:
    """A trace array from figure JSON (Plotly 6+ writes numpy arrays as base64 typed arrays)."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return out.reshape(value["shape"]) if "shape" in value and isinstance(value["shape"], list) else out
    return np.asarray(value)


def trace_names(at: AppTest) -> set[str]:
    return {t.get("name") for f in figures(at) for t in f["data"] if t.get("name")}


@pytest.fixture
def downloads(monkeypatch):
    """Capture what the download buttons would serve."""
    import streamlit as st

    seen: dict[str, bytes] = {}
    original = st.download_button

    def record(label, data, *args, **kwargs):
        seen[kwargs.get("file_name") or label] = data() if callable(data) else data
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", record)
    return seen


# --------------------------------------------------------------------------- every view
@pytest.mark.parametrize("view", VIEWS)
def test_every_view_renders_without_exception(reports, monkeypatch, view):
    at = ok(app_for(reports, monkeypatch, view))
    assert at.sidebar.radio(key="view").value == view
    assert at.header and at.header[0].value.startswith(view.split("-")[0].split()[0])
    assert not at.error, [e.value for e in at.error]
    assert any("SYNTHETIC" in w.value for w in at.warning)  # a synthetic run always says so


def test_overview_table_scatter_and_id_vs_ood(reports, monkeypatch, downloads):
    at = ok(app_for(reports, monkeypatch))
    table = at.dataframe[0].value
    assert set(table["model"]) == set(MODELS)
    assert {"accuracy", "ece", "ece_ci", "brier", "nll", "auroc"} <= set(table.columns)
    metrics = json.loads((reports / "synthetic-tiny" / "metrics.json").read_text())["results"]
    row = table[(table["model"] == "teacher") & (table["dataset"] == "countries")].iloc[0]
    ref = next(r for r in metrics if r["model"] == "teacher" and r["dataset"] == "countries")
    assert row["ece"] == pytest.approx(ref["ece"])
    assert row["ece_ci"] == f"[{ref['ece_ci'][0]:.3f}, {ref['ece_ci'][1]:.3f}]"
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert titles == ["ECE against accuracy", "ECE in domain and out of domain"]
    assert set(MODELS) <= trace_names(at)
    csv = pd.read_csv(io.BytesIO(downloads["metrics.csv"]))
    assert len(csv) == len(metrics) and "nll" in csv.columns
    # another metric for the ID-vs-OOD chart
    ok(at.selectbox(key="ov_metric").set_value("brier").run())
    assert figures(at)[1]["layout"]["yaxis"]["title"]["text"] == "Brier"


def test_reliability_bins_and_scheme_are_recomputed(reports, monkeypatch):
    at = ok(app_for(reports, monkeypatch, "Reliability"))
    fig = figures(at)[0]
    bars = [t for t in fig["data"] if t["type"] == "bar"]
    assert len(bars) == len(MODELS) and all(len(arr(b["y"])) == 10 for b in bars)
    assert all(arr(b["y"]).sum() == 60 for b in bars)  # every item in one bin
    ok(at.slider(key="rel_bins").set_value(15).run())
    ok(at.radio(key="rel_scheme").set_value("equal-mass").run())
    bars = [t for t in figures(at)[0]["data"] if t["type"] == "bar"]
    assert all(len(arr(b["y"])) == 15 for b in bars)
    assert all(np.ptp(arr(b["y"])) <= 1 for b in bars)  # equal mass: 60 items in 15 bins of 4
    ok(at.selectbox(key="rel_dataset").set_value("mmlu").run())
    assert "mmlu" in figures(at)[0]["layout"]["title"]["text"]


def test_reliability_legend_ece_matches_the_metrics_core(reports, monkeypatch):
    from first_eval.calibration import expected_calibration_error
    from first_eval.predictions import group_predictions, read_predictions

    at = ok(app_for(reports, monkeypatch, "Reliability"))
    frame = read_predictions(reports / "synthetic-tiny" / "predictions.parquet")
    groups = {(g.model, g.dataset): g for g in group_predictions(frame)}
    g = groups[("teacher", "countries")]
    expected = expected_calibration_error(g.probs, g.labels, n_bins=10, scheme="width")
    assert f"teacher (ECE {expected:.3f})" in trace_names(at)


def _paired_reference(run: Path, model_a: str, model_b: str, dataset: str, n_resamples: int):
    from first_eval.bootstrap import paired_bootstrap
    from first_eval.predictions import align_groups, group_predictions, read_predictions

    groups = {(g.model, g.dataset): g for g in group_predictions(read_predictions(run / "predictions.parquet"))}
    pa, pb, labels, _ = align_groups(groups[(model_a, dataset)], groups[(model_b, dataset)])
    return paired_bootstrap(pa, pb, labels, n_resamples=n_resamples, seed=0, n_bins=10, scheme="width")


def test_compare_paired_differences_scatter_and_disagreements(reports, monkeypatch, downloads):
    at = ok(app_for(reports, monkeypatch, "Compare"))
    ok(at.selectbox(key="cmp_a").set_value("student-first").run())
    ok(at.selectbox(key="cmp_b").set_value("teacher").run())
    # the run's own comparison (metrics.json) is shown first, without recomputing
    assert any("stored in metrics.json (50 resamples)" in c.value for c in at.caption)
    stored = json.loads((reports / "synthetic-tiny" / "metrics.json").read_text())["comparisons"]
    entry = next(c for c in stored if (c["model_a"], c["model_b"], c["dataset"]) == ("student-first", "teacher",
                                                                                      "countries"))
    row = at.dataframe[0].value.set_index("metric").loc["ECE"]
    assert (row["difference"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (entry["differences"]["ece"]["difference"], *entry["differences"]["ece"]["ci"]))
    ok(at.selectbox(key="cmp_a").set_value("teacher").run())  # the reverse pair: the same numbers, negated
    ok(at.selectbox(key="cmp_b").set_value("student-first").run())
    row = at.dataframe[0].value.set_index("metric").loc["ECE"]
    assert (row["difference"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (-entry["differences"]["ece"]["difference"], -entry["differences"]["ece"]["ci"][1],
         -entry["differences"]["ece"]["ci"][0]))
    ok(at.selectbox(key="cmp_a").set_value("student-first").run())
    ok(at.selectbox(key="cmp_b").set_value("teacher").run())
    ok(at.toggle(key="cmp_live").set_value(True).run())
    ok(at.select_slider(key="cmp_resamples").set_value(200).run())
    assert any("computed now (200 resamples" in c.value for c in at.caption)
    forest, scatter = figures(at)
    assert "student-first − teacher" in forest["layout"]["title"]["text"]
    diffs = at.dataframe[0].value
    assert {"ECE", "accuracy", "NLL", "Brier"} <= set(diffs["metric"])
    assert (diffs["ci_low"] <= diffs["ci_high"]).all()
    ref = _paired_reference(reports / "synthetic-tiny", "student-first", "teacher", "countries", 200)
    row = diffs[diffs["metric"] == "ECE"].iloc[0]
    assert (row["difference"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (ref["ece"].difference, ref["ece"].ci_low, ref["ece"].ci_high))
    n_points = sum(len(arr(t["x"])) for t in scatter["data"] if t["type"] == "scattergl")
    assert n_points == 60
    disagree = at.dataframe[1].value
    assert (disagree["A answer"] != disagree["B answer"]).all()
    assert "disagreements.csv" in downloads
    ok(at.selectbox(key="cmp_b").set_value("student-first").run())
    assert any("two different models" in i.value for i in at.info)


def test_items_filters_confidently_wrong_subject_and_text(reports, monkeypatch, downloads):
    at = ok(app_for(reports, monkeypatch, "Items"))
    ok(at.selectbox(key="it_model").set_value("teacher").run())
    shown = at.dataframe[0].value
    assert len(shown) > 0
    assert (~shown["correct"]).all() and (shown["confidence"] >= 0.8).all()
    assert list(shown["confidence"]) == sorted(shown["confidence"], reverse=True)
    ok(at.slider(key="it_threshold").set_value(0.95).run())
    assert (at.dataframe[0].value["confidence"] >= 0.95).all()
    ok(at.selectbox(key="it_show").set_value("all").run())
    everything = at.dataframe[0].value
    assert len(everything) == 3 * 60
    ok(at.multiselect(key="it_datasets").set_value(["mmlu"]).run())
    subjects = sorted(at.dataframe[0].value["subject"].unique())
    ok(at.multiselect(key="it_subjects").set_value(subjects[:1]).run())
    one = at.dataframe[0].value
    assert set(one["subject"]) == {subjects[0]} and set(one["dataset"]) == {"mmlu"}
    csv = pd.read_csv(io.BytesIO(downloads["items.csv"]))
    assert len(csv) == len(one)
    ok(at.text_input(key="it_query").set_value("Question 7 ").run())
    assert all("Question 7 " in p for p in at.dataframe[0].value["prompt"])


def test_items_show_dataset_text_literally(reports, monkeypatch):
    at = ok(app_for(reports, monkeypatch, "Items"))
    ok(at.selectbox(key="it_show").set_value("all").run())
    ok(at.text_input(key="it_query").set_value("pwned").run())
    assert len(at.dataframe[0].value) == 3  # the first item of each dataset carries the hostile text
    assert HOSTILE_TEXT in at.code[0].value  # st.code: shown, never interpreted
    for element in (*at.markdown, *at.caption, *at.info, *at.warning, *at.error):
        assert "<script" not in element.value and "<img" not in element.value
    answers = at.dataframe[1].value
    assert set(answers["model"]) == set(MODELS)
    np.testing.assert_allclose(answers[["A", "B", "C", "D"]].sum(axis=1), 1.0, atol=1e-9)


def test_training_trajectory_and_temperature_grid(reports, monkeypatch):
    at = ok(app_for(reports, monkeypatch, "Training"))
    traj, grid = figures(at)
    # one model: a line per dataset (its CI band is a closed outline, not a line over steps)
    steps = [arr(t["x"]) for t in traj["data"] if t.get("mode") == "lines+markers"]
    assert steps and all((np.diff(s) > 0).all() for s in steps)
    assert [a["text"] for a in grid["layout"]["annotations"][:2]] == ["first", "temperature"]
    ok(at.multiselect(key="tr_metrics").set_value(["nll"]).run())
    assert [a["text"] for a in figures(at)[0]["layout"]["annotations"]] == ["NLL"]


def test_knowledge_curves(reports, monkeypatch):
    at = ok(app_for(reports, monkeypatch, "Concentrated knowledge"))
    mass = figures(at)[0]
    assert {"base · response positions", "teacher · all positions"} <= trace_names(at)
    table = at.dataframe[0].value
    assert (table["mass@5"] <= table["mass@10"]).all()
    assert mass["layout"]["yaxis"]["title"]["text"] == "mass@k"


def test_whatif_temperature_moves_ece_not_accuracy(reports, monkeypatch, synthetic_run):
    from first_dashboard.compute import apply_temperature
    from first_eval.calibration import expected_calibration_error
    from first_eval.predictions import group_predictions, read_predictions

    at = ok(app_for(reports, monkeypatch, "What-if"))
    ok(at.selectbox(key="wi_model").set_value("teacher").run())
    ok(at.select_slider(key="wi_t").set_value(2.0).run())
    values = {m.label: float(m.value) for m in at.metric}
    g = next(g for g in group_predictions(read_predictions(synthetic_run / "predictions.parquet"))
             if (g.model, g.dataset) == ("teacher", "countries"))
    expected = expected_calibration_error(apply_temperature(g.probs, 2.0), g.labels, n_bins=10, scheme="width")
    assert values["ECE"] == pytest.approx(expected, abs=5e-5)
    assert values["accuracy"] == pytest.approx((g.probs.argmax(1) == g.labels).mean(), abs=5e-5)
    assert len([t for t in figures(at)[0]["data"] if t["type"] == "bar"]) == 2  # T = 1 and T = 2
    ok(at.toggle(key="wi_fit").set_value(True).run())
    assert any("T* =" in c.value for c in at.caption)


def test_apply_temperature_keeps_padding_and_argmax():
    from first_dashboard.compute import apply_temperature

    p = np.array([[0.6, 0.3, 0.1, 0.0], [0.25, 0.25, 0.5, 0.0]])
    for t in (0.5, 1.0, 3.0):
        q = apply_temperature(p, t)
        assert (q[:, 3] == 0).all()
        np.testing.assert_allclose(q.sum(axis=1), 1.0)
        assert (q.argmax(1) == p.argmax(1)).all()
    np.testing.assert_allclose(apply_temperature(p, 1.0), p)
    assert apply_temperature(p, 100.0)[0, 0] == pytest.approx(1 / 3, abs=0.01)
    with pytest.raises(ValueError):
        apply_temperature(p, 0.0)


# --------------------------------------------------------------------------- sidebar and several runs
def test_model_and_dataset_pickers_filter_every_view(reports, monkeypatch):
    at = ok(app_for(reports, monkeypatch))
    ok(at.sidebar.multiselect(key="models").set_value(["teacher"]).run())
    ok(at.sidebar.multiselect(key="datasets").set_value(["countries"]).run())
    table = at.dataframe[0].value
    assert set(table["model"]) == {"teacher"} and set(table["dataset"]) == {"countries"}
    for view in VIEWS:
        ok(at.sidebar.radio(key="view").set_value(view).run())
    ok(at.sidebar.multiselect(key="models").set_value([]).run())
    assert any("at least one model" in i.value for i in at.info)


def test_two_runs_side_by_side(tmp_path, monkeypatch, synthetic_run):
    shutil.copytree(synthetic_run, tmp_path / "run-a")
    make_synthetic_run(tmp_path / "run-b", models=("base", "student-first"), datasets=["countries"], n_items=30,
                       seed=9, bootstrap=0, n_checkpoints=0)
    at = ok(app_for(tmp_path, monkeypatch))
    ok(at.sidebar.multiselect(key="runs").set_value(["run-a", "run-b"]).run())
    labels = at.sidebar.multiselect(key="models").options
    assert "teacher [run-a]" in labels and "student-first [run-b]" in labels
    for view in VIEWS:
        ok(at.sidebar.radio(key="view").set_value(view).run())
        assert not at.error
    ok(at.sidebar.radio(key="view").set_value("Overview").run())
    assert "base [run-b]" in set(at.dataframe[0].value["model"])


# --------------------------------------------------------------------------- robustness
@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_no_runs_explains_how_to_make_one(tmp_path, monkeypatch, kind):
    reports = tmp_path / "reports"
    if kind == "empty":
        reports.mkdir()
        (reports / "not-a-run").mkdir()
    at = ok(app_for(reports, monkeypatch))
    text = " ".join(m.value for m in (*at.markdown, *at.info))
    assert "make demo" in text
    assert ("does not exist" if kind == "missing" else "holds no run directories") in text


@pytest.mark.parametrize("damage", ["metrics-json", "predictions", "version", "results-shape"])
def test_a_corrupt_run_shows_one_error_and_the_rest_works(tmp_path, monkeypatch, synthetic_run, damage):
    good = tmp_path / "good-run"
    bad = tmp_path / "zz-bad-run"
    shutil.copytree(synthetic_run, good)
    shutil.copytree(synthetic_run, bad)
    if damage == "metrics-json":
        (bad / "metrics.json").write_text("{not json")
    elif damage == "predictions":
        (bad / "predictions.parquet").write_bytes(b"PAR1 garbage")
    elif damage == "version":
        info = json.loads((bad / "run.json").read_text())
        (bad / "run.json").write_text(json.dumps({**info, "format_version": 99}))
    else:
        (bad / "metrics.json").write_text(json.dumps({"results": {"model": "x"}}))
    later = (good / "run.json").stat().st_mtime + 10
    os.utime(bad, (later, later))  # the broken run is the newest
    at = ok(app_for(tmp_path, monkeypatch))
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "zz" in errors[0] and "bad" in errors[0]
    assert at.sidebar.multiselect(key="runs").value == ["good-run"]
    assert set(at.dataframe[0].value["model"]) == set(MODELS)
    for view in VIEWS[1:]:
        ok(at.sidebar.radio(key="view").set_value(view).run())
        assert len(at.error) == 1
    ok(at.sidebar.multiselect(key="runs").set_value(["good-run", "zz-bad-run"]).run())
    assert len(at.error) == 1  # still one error, and the good run still shows
    assert at.header


# --------------------------------------------------------------------------- reading only under the reports dir
def test_symlinks_out_of_the_reports_directory_are_refused(tmp_path, monkeypatch, synthetic_run):
    from first_eval import predictions

    outside = tmp_path / "outside"
    shutil.copytree(synthetic_run, outside / "secret-run")
    reports = tmp_path / "reports"
    shutil.copytree(synthetic_run, reports / "good")
    (reports / "linked-out").symlink_to(outside / "secret-run", target_is_directory=True)
    sneaky = reports / "sneaky"
    shutil.copytree(synthetic_run, sneaky)
    (sneaky / "predictions.parquet").unlink()
    (sneaky / "predictions.parquet").symlink_to(outside / "secret-run" / "predictions.parquet")
    (reports / "inside-alias").symlink_to(reports / "good", target_is_directory=True)  # inside: fine

    read = []
    original = predictions.read_predictions
    monkeypatch.setattr(predictions, "read_predictions", lambda p, **kw: read.append(Path(p)) or original(p, **kw))
    at = ok(app_for(reports, monkeypatch))
    errors = " ".join(e.value for e in at.error)
    assert "linked\\-out" in errors and "sneaky" in errors and "outside the reports directory" in errors
    assert set(at.sidebar.multiselect(key="runs").options) == {"good", "inside-alias"}
    for view in VIEWS:
        ok(at.sidebar.radio(key="view").set_value(view).run())
    assert len(at.error) == 2  # one per refused entry, on every view
    assert all(p.resolve().is_relative_to(reports.resolve()) for p in read), read
    assert not any("outside" in str(p.resolve()) for p in read)


def test_check_inside_and_discover_directly(tmp_path, synthetic_run):
    from first_dashboard.data import check_inside, discover
    from first_eval.errors import UserError

    reports = tmp_path / "r"
    shutil.copytree(synthetic_run, reports / "ok")
    (reports / "out").symlink_to(synthetic_run, target_is_directory=True)
    refs, refused = discover(reports)
    assert [r.name for r in refs] == ["ok"]
    assert len(refused) == 1 and "out" in refused[0]
    (reports / "ok" / "trajectory.json").unlink()
    (reports / "ok" / "trajectory.json").symlink_to("/etc/passwd")
    with pytest.raises(UserError, match="outside the reports directory"):
        check_inside(reports / "ok", reports.resolve())
    assert discover(tmp_path / "missing") == ([], [])


def test_reports_may_name_one_run_directory(tmp_path, monkeypatch, synthetic_run):
    from first_eval import predictions

    reports = tmp_path / "reports"
    run = reports / "default-20250101-000000"
    shutil.copytree(synthetic_run, run)
    shutil.copytree(synthetic_run, reports / "other-run")  # a sibling: not shown, not read
    read = []
    original = predictions.read_predictions
    monkeypatch.setattr(predictions, "read_predictions", lambda p, **kw: read.append(Path(p).resolve()) or original(p, **kw))
    monkeypatch.delenv("FIRST_REPORTS_DIR", raising=False)
    monkeypatch.setattr("sys.argv", ["app/main.py", "--reports", str(run)])  # what a newcomer types
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert at.sidebar.multiselect(key="runs").options == [run.name]
    assert at.sidebar.multiselect(key="runs").value == [run.name]
    assert any(c.value.startswith("Run ") for c in at.sidebar.caption)
    assert set(at.dataframe[0].value["model"]) == set(MODELS)
    for view in VIEWS:
        ok(at.sidebar.radio(key="view").set_value(view).run())
        assert not at.error, [e.value for e in at.error]
    assert read and all(p.is_relative_to(run.resolve()) for p in read), read
    n_read = len(read)

    # a run file pointing outside the run directory, even into a sibling run, is refused
    (run / "predictions.parquet").unlink()
    (run / "predictions.parquet").symlink_to(reports / "other-run" / "predictions.parquet")
    at = ok(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run())
    assert len(at.error) == 1 and "outside the reports directory" in at.error[0].value
    assert any("a run directory that could not be read" in i.value for i in at.info)
    assert len(read) == n_read  # the sibling's table was never opened


def test_discover_one_run_directory(tmp_path, synthetic_run):
    from first_dashboard.data import check_inside, discover
    from first_eval.errors import UserError

    run = tmp_path / "reports" / "one-run"
    shutil.copytree(synthetic_run, run)
    shutil.copytree(synthetic_run, tmp_path / "reports" / "sibling")
    (ref,), refused = discover(run)
    assert not refused
    assert (ref.name, ref.path, ref.root) == ("one-run", str(run.resolve()), str(run.resolve()))
    (tmp_path / "latest").symlink_to(run, target_is_directory=True)  # a link to a run: that run
    assert [(r.name, r.path) for r in discover(tmp_path / "latest")[0]] == [("one-run", ref.path)]
    with pytest.raises(UserError, match="outside the reports directory"):  # the root is the run, not its parent
        check_inside(tmp_path / "reports" / "sibling", run.resolve())
    (run / "knowledge.json").unlink()
    (run / "knowledge.json").symlink_to(tmp_path / "reports" / "sibling" / "knowledge.json")
    refs, refused = discover(run)
    assert refs == [] and len(refused) == 1 and "knowledge.json" in refused[0]
    # as a folder of runs, the root is the folder: a link between two of its runs stays inside it
    assert {r.name for r in discover(tmp_path / "reports")[0]} == {"one-run", "sibling"}


def test_reports_dir_from_argv_env_and_default(monkeypatch):
    from first_dashboard.data import reports_dir

    monkeypatch.delenv("FIRST_REPORTS_DIR", raising=False)
    assert reports_dir([]) == Path("reports")
    assert reports_dir(["--reports", "/x/y"]) == Path("/x/y")
    monkeypatch.setenv("FIRST_REPORTS_DIR", "/from/env")
    assert reports_dir(["-q", "tests"]) == Path("/from/env")
    assert reports_dir(["--reports", "/x"]) == Path("/x")


def test_csv_download_neutralizes_spreadsheet_formulas():
    from first_dashboard.compute import csv_bytes

    frame = pd.DataFrame({"prompt": ["=HYPERLINK(\"x\")", "+1", "plain", "-2"], "value": [-1.5, 2.0, 3.0, 4.0]})
    back = pd.read_csv(io.BytesIO(csv_bytes(frame)))
    assert list(back["prompt"]) == ["'=HYPERLINK(\"x\")", "'+1", "plain", "'-2"]
    assert list(back["value"]) == [-1.5, 2.0, 3.0, 4.0]


def test_markdown_contexts_escape_names(tmp_path, monkeypatch):
    name = "<b>[evil](javascript:alert(1))</b>"
    make_synthetic_run(tmp_path / "run", models=("base", name), datasets=["d$x$"], n_items=20, seed=1,
                       bootstrap=0, n_checkpoints=0)
    at = ok(app_for(tmp_path, monkeypatch, "What-if"))
    ok(at.selectbox(key="wi_model").set_value(name).run())
    for view in VIEWS:
        ok(at.sidebar.radio(key="view").set_value(view).run())
        for fig in figures(at):
            blob = json.dumps(fig)
            assert "<b>[evil]" not in blob, [k for k in blob.split('"') if "<b>[evil]" in k][:3]


def test_synthetic_cli_writes_a_run_whose_metrics_match_the_metrics_core(tmp_path, capsys):
    from first_eval.cli.metrics import compute_results
    from first_eval.rundir import load_run
    from first_eval.synthetic import main

    assert main([str(tmp_path / "reports" / "demo"), "--items", "25", "--seed", "4", "--bootstrap", "20"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    run = load_run(tmp_path / "reports" / "demo")
    assert run.info["synthetic"] is True and run.metrics["metadata"]["synthetic"] is True
    fresh = compute_results(run.predictions, n_bins=10, scheme="width", bootstrap=0, seed=4)
    for stored, again in zip(run.results, fresh):
        assert {k: v for k, v in stored.items() if not k.endswith("_ci")} == pytest.approx(again)
    assert run.trajectory and run.calibration and run.knowledge["models"]
