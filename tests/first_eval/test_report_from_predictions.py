"""`first-eval report --predictions FILE --out DIR`: a run directory without any model.

The predictions come from real lm-eval runs (tests/fixtures/lm_eval): the same SmolLM2 read plain
and through its chat template, imported as two models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from first_eval import rundir
from first_eval.arms import compute_arm_comparisons, compute_arm_results
from first_eval.errors import UserError
from first_eval.imports.lm_eval import read_lm_eval
from first_eval.predictions import read_predictions, write_predictions
from first_eval.report.from_predictions import write_predictions_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval"
BOOT = 200


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "first_eval.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("preds")
    plain, chat = root / "plain.jsonl", root / "chat.parquet"
    write_predictions(read_lm_eval([FIXTURES / "v0.4.13"], model="smollm2-plain").frame, plain)
    write_predictions(read_lm_eval([FIXTURES / "v0.4.13-chat"], model="smollm2-chat").frame, chat)
    return plain, chat


@pytest.fixture(scope="module")
def run(tables, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reports") / "lm-eval-smollm2"
    proc = _cli("report", "--predictions", str(tables[0]), "--predictions", str(tables[1]), "--out", str(out),
                "--bootstrap", str(BOOT), "--role", "first_countries_letters=in-domain",
                "--role", "first_mmlu_text=far-ood")
    assert proc.returncode == 0, proc.stderr
    assert "2 models, 2 datasets, 2 paired comparisons" in proc.stdout
    return out


def test_the_run_directory_holds_what_a_study_writes(run):
    names = {p.name for p in run.iterdir()}
    assert {rundir.RUN_FILE, rundir.METRICS_FILE, rundir.PREDICTIONS_FILE, rundir.REPORT_MD,
            rundir.REPORT_HTML} <= names
    assert not [n for n in names if n.startswith(".")]
    loaded = rundir.load_run(run)
    assert loaded.info["source"]["kind"] == "predictions"
    assert len(loaded.info["source"]["files"]) == 2
    assert {d["name"]: d["role"] for d in loaded.info["datasets"]} == {
        "first_countries_letters": "in-domain", "first_mmlu_text": "far-ood"}
    assert {m["name"] for m in loaded.info["models"]} == {"smollm2-plain", "smollm2-chat"}
    assert len(loaded.predictions) == 64


def test_metrics_equal_the_metrics_core_and_the_command_it_names(run, tables):
    metrics = json.loads((run / rundir.METRICS_FILE).read_text())
    frame = read_predictions(run / rundir.PREDICTIONS_FILE)
    expected = compute_arm_results(frame, n_bins=10, scheme="width", bootstrap=BOOT, seed=0)
    assert json.dumps(metrics["results"], sort_keys=True) == json.dumps(
        json.loads(json.dumps(expected)), sort_keys=True)
    # The command the report prints reproduces the results.
    cmd = metrics["metadata"]["command"].split()
    assert cmd[:2] == ["first-eval", "metrics"]
    proc = _cli(*cmd[1:2], str(run / cmd[2]), *cmd[3:])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"] == json.loads(json.dumps(metrics["results"]))
    comps = compute_arm_comparisons(frame, "smollm2-plain", "smollm2-chat", n_bins=10, scheme="width",
                                    bootstrap=BOOT, seed=0)
    for got, want in zip(metrics["comparisons"], comps):
        assert got["dataset"] == want["dataset"] and got["n"] == want["n"] == 16
        for m in ("accuracy", "ece"):
            assert got["differences"][m]["difference"] == pytest.approx(want["differences"][m]["difference"])
            assert got["differences"][m]["ci"] == pytest.approx(want["differences"][m]["ci"])
            assert got["differences"][m]["p_holm"] >= got["differences"][m]["p_value"]


def test_the_report_leads_with_findings_and_has_the_figures(run):
    md = (run / rundir.REPORT_MD).read_text()
    lead = md.split("## What it found", 1)[1].split("\n## ", 1)[0]
    assert "first_countries_letters (16 items, in-domain)" in lead
    assert "lowest ECE: " in lead
    assert "smollm2-plain against smollm2-chat" in lead
    assert "no model was run" in md and "What held and what did not" not in md
    html = (run / rundir.REPORT_HTML).read_text()
    assert html.count("Reliability — ") == 2 and "plotly" in html.lower()
    assert "https://" not in html.split("<script", 1)[0]  # self-contained: nothing fetched before the script


def test_rebuilding_the_report_of_a_predictions_run(run):
    before = (run / rundir.REPORT_MD).read_text()
    proc = _cli("report", str(run))
    assert proc.returncode == 0, proc.stderr
    after = (run / rundir.REPORT_MD).read_text()
    assert after.split("## What it found")[1] == before.split("## What it found")[1]


def test_a_second_report_replaces_the_directory_whole(tables, tmp_path):
    out = tmp_path / "r"
    assert _cli("report", "--predictions", str(tables[0]), "--out", str(out), "--bootstrap", "50").returncode == 0
    (out / "stale.txt").write_text("from before")
    proc = _cli("report", "--predictions", str(tables[1]), "--out", str(out), "--bootstrap", "50")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "stale.txt").exists()
    assert set(read_predictions(out / rundir.PREDICTIONS_FILE)["model"]) == {"smollm2-chat"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_one_model_says_whether_it_is_over_confident(tables, tmp_path):
    write_predictions_run(tables[0], tmp_path / "one", bootstrap=50)
    md = (tmp_path / "one" / rundir.REPORT_MD).read_text()
    assert "**over-confident** — first_mmlu_text (16 items)" in md


@pytest.mark.parametrize("args, message", [
    (["--out", "X"], "pass a run directory to rebuild"),
    (["--predictions", "P"], "--predictions needs --out"),
    (["--predictions", "P", "--out", "X", "--role", "first_mmlu_text=ood"], "expected DATASET=ROLE"),
    (["--predictions", "P", "--out", "X", "--role", "nope=in-domain"], "no dataset 'nope'"),
    (["--predictions", "P", "--out", "X", "--compare", "smollm2-plain,ghost"], "no model 'ghost'"),
    (["--predictions", "P", "--out", "X", "--compare", "just-one"], "expected MODEL_A,MODEL_B"),
    (["RUN", "--predictions", "P", "--out", "X"], "not both"),
])
def test_bad_flags_are_one_line_and_exit_2(tables, tmp_path, args, message):
    args = [{"P": str(tables[0]), "X": str(tmp_path / "out"), "RUN": str(tmp_path)}.get(a, a) for a in args]
    proc = _cli("report", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_existing_directory_that_is_not_a_run_is_not_replaced(tables, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    proc = _cli("report", "--predictions", str(tables[0]), "--out", str(out))
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    assert (out / "thesis.tex").read_text() == "precious"


def test_a_bad_predictions_file_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model": "m", "dataset": "d", "id": "1", "probs": [0.5, 0.6], "label": 0}\n')
    with pytest.raises(UserError, match="sum to 1.1"):
        write_predictions_run(bad, tmp_path / "out")
    proc = _cli("report", "--predictions", str(bad), "--out", str(tmp_path / "out2"))
    assert proc.returncode == 2 and not (tmp_path / "out2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_seed_replicas_are_arms(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for model in ("a@0", "a@1", "b"):
        for i in range(40):
            p = rng.dirichlet([1, 1, 1])
            rows.append({"model": model, "dataset": "d", "id": str(i), "probs": p.tolist(), "label": i % 3})
    path = tmp_path / "p.jsonl"
    write_predictions(rows, path)
    info = write_predictions_run(path, tmp_path / "out", bootstrap=50)
    assert info["models"] == 2 and info["comparisons"] == 1
    metrics = json.loads((tmp_path / "out" / rundir.METRICS_FILE).read_text())
    assert {r["model"] for r in metrics["results"]} == {"a", "b"}
    assert {r["model"] for r in metrics["replicas"]} == {"a@0", "a@1"}
