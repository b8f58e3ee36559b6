"""`first-eval run`: config validation, a tiny study through the whole path, cache reuse, kill-and-resume."""

from __future__ import annotations

import json
from dataclasses import replace
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from first_eval.errors import UserError
from first_eval.study.config import StudyConfig, default_config_path

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


# ------------------------------------------------------------------------------ config


def test_default_config_is_valid():
    cfg = StudyConfig.from_yaml(default_config_path())
    kinds = {m.name: m.kind for m in cfg.models}
    assert kinds["base"] == "spec" and kinds["teacher"] == "finetune" and kinds["teacher+ts"] == "posthoc"
    assert {m.distill.loss for m in cfg.models if m.distill} == {"topk", "first"}
    assert cfg.validation is not None and cfg.validation.split == "val"
    # one seed per student here (the 30-minute budget); default-seeds.yaml is the same study with three
    seeded = StudyConfig.from_yaml(default_config_path().with_name("default-seeds.yaml"))
    for m in seeded.models:
        if m.name.startswith("student") and m.kind != "posthoc":
            assert seeded.seeds_of(m.name) == (0, 1, 2)
            assert replace(m, seeds=None) == cfg.model(m.name)  # seed 0 is the default's model (a cache hit)
        else:
            assert m == cfg.model(m.name)
    # the teachers are one fine-tuning run, three ways of picking its checkpoint
    runs = {m.name: m.finetune for m in cfg.models if m.name.startswith("teacher") and m.finetune}
    assert {r.select for r in runs.values()} == {"val-accuracy", "val-ece", "last"}
    assert len({replace(r, select="last") for r in runs.values()}) == 1
    assert [d.role for d in cfg.datasets] == ["in-domain", "near-ood", "far-ood", "validation"]
    assert cfg.hash() == StudyConfig.from_yaml(default_config_path()).hash()


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["models"].append({"name": "base", "spec": "x"}), "used twice"),
    (lambda c: c["models"].append({"name": "s", "distill": {"student": "x", "teacher": "ghost"}}), "unknown model 'ghost'"),
    (lambda c: c["models"].append({"name": "s", "spec": "x", "finetune": {"model": "x"}}), "exactly one of"),
    (lambda c: c["datasets"][0].update(role="sideways"), "role must be one of"),
    (lambda c: c.update(comparisons=[["base", "nobody"]]), "unknown model 'nobody'"),
    (lambda c: c.update(colour="blue"), "unknown key 'colour'"),
    (lambda c: c["models"].append({"name": "s", "distill": {"student": "x", "teacher": "base", "loss": "magic"}}),
     "loss must be one of"),
    (lambda c: c.update(metrics={"bins": 0}), "bins"),
])
def test_bad_configs_are_one_clear_error(mutate, message):
    cfg = {"name": "t", "datasets": [{"name": "countries", "role": "in-domain"}],
           "models": [{"name": "base", "spec": "smollm2-135m"}]}
    mutate(cfg)
    with pytest.raises(UserError, match=message):
        StudyConfig.from_dict(cfg)


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        StudyConfig.from_yaml(bad)
    with pytest.raises(UserError, match="no such config file"):
        StudyConfig.from_yaml(tmp_path / "missing.yaml")


def test_run_cli_bad_config_is_one_line(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("name: t\ndatasets: []\nmodels: []\n")
    proc = subprocess.run([sys.executable, "-m", "first_eval.cli", "run", "--config", str(bad),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: study: needs at least one dataset and one model"]
    assert not (tmp_path / "out").exists()


def test_a_hub_model_offline_fails_at_the_first_stage_in_one_line(tmp_path):
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump({"name": "hub", "datasets": [{"name": "countries", "split": "test", "limit": 4}],
                                      "models": [{"name": "remote", "spec": "some-org/some-model"}]}))
    proc = subprocess.run([sys.executable, "-m", "first_eval.cli", "run", "--config", str(config),
                           "--out", str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True,
                          env=dict(ENV, FIRST_HOME=str(tmp_path / "home")), timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot load") and "offline" in last and "Traceback" not in proc.stderr
    assert "[1/" in proc.stderr and "[2/" not in proc.stderr  # at the first stage, before any scoring
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ plan and time left


def test_default_plan_costs_training_and_large_datasets_most(tmp_path):
    from first_eval.study.runner import StudyRunner

    plan = StudyRunner(StudyConfig.from_yaml(default_config_path()), tmp_path / "out").plan()
    cost = dict(zip(plan.titles, plan.costs))
    teacher = cost["fine-tune teacher from smollm2-135m on countries/train"]
    trajectory = cost["trajectory: score teacher's checkpoints on every dataset"]
    assert max(teacher, trajectory) == max(plan.costs)
    # Top 12 layers trained, teacher and students alike: they score at the same cost.
    assert cost["score teacher on mmlu"] == pytest.approx(cost["score student-ce on mmlu"])
    assert cost["score base on mmlu"] == pytest.approx(2.5 * cost["score teacher on mmlu"])
    assert cost["score teacher on mmlu"] > cost["score teacher on countries"]
    # Only the first student of a teacher pays for extracting its top-k.
    assert cost["distill student-topk (topk) from teacher"] > cost["distill student-first (first) from teacher"]
    assert cost["report"] == cost["metrics, bootstrap CIs and paired tests"] == 0


def test_time_left_comes_from_the_pace_of_stages_that_ran():
    from first_eval.study.cost import Pace, duration

    pace = Pace()
    assert pace.left(100.0) is None  # nothing measured yet: no guess
    pace.update(cost=0.0, seconds=20.0)  # an uncosted stage (a model conversion) teaches nothing
    pace.update(cost=50.0, seconds=0.01)  # a cache hit teaches nothing either
    assert pace.left(100.0) is None
    pace.update(cost=10.0, seconds=30.0)
    assert pace.left(100.0) == pytest.approx(300.0)
    assert [duration(x) for x in (4.25, 42, 185, 3725)] == ["4.2s", "42s", "3m05s", "1h02m"]


# ------------------------------------------------------------------------------ a tiny study


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer):
    """A 4-layer random Llama with the real SmolLM2 tokenizer, saved as an HF directory."""
    from tiny_models import make_tiny_llama

    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    model = make_tiny_llama(smollm2_tokenizer, num_hidden_layers=4)
    model.save_pretrained(path, safe_serialization=True)
    smollm2_tokenizer.save_pretrained(path)
    return path


def tiny_study(model_dir: Path) -> dict:
    student = f"{model_dir}:layers=0,3"
    common = {"dataset": "countries", "epochs": 1, "lr": 1e-3, "batch_size": 4, "limit": 16}
    return {
        "name": "tiny", "seed": 0,
        "datasets": [{"name": "countries", "split": "test", "role": "in-domain", "limit": 12},
                     {"name": "countries-ood", "role": "near-ood", "limit": 8},
                     {"name": "mmlu", "role": "far-ood", "limit": 8},
                     {"name": "countries", "split": "val", "role": "validation", "limit": 10, "label": "val"}],
        "models": [
            {"name": "base", "spec": str(model_dir)},
            {"name": "teacher", "finetune": {"model": str(model_dir), "save_every": 2, "select": "val-accuracy",
                                             **common}},
            {"name": "teacher-es", "finetune": {"model": str(model_dir), "save_every": 2, "select": "val-ece",
                                                **common}},
            {"name": "teacher+ts", "posthoc": {"model": "teacher", "method": "temperature"}},
            {"name": "teacher+ts-oracle", "posthoc": {"model": "teacher", "method": "temperature", "fit": "cross",
                                                      "folds": 2}},
            {"name": "student-ce", "seeds": [0, 1], "finetune": {"model": str(model_dir), "train_top_layers": 1,
                                                                **common}},
            {"name": "student-ce+ts", "posthoc": {"model": "student-ce", "method": "temperature"}},
            {"name": "student-topk", "distill": {"student": student, "teacher": "teacher", "loss": "topk", "k": 5,
                                                 **common}},
            {"name": "student-first", "distill": {"student": student, "teacher": "teacher", "loss": "first", "k": 5,
                                                  **common}},
        ],
        "scorer": {"template": "plain", "shots": 0, "batch_tokens": 2048},
        "metrics": {"bins": 10, "scheme": "width", "bootstrap": 50},
        "comparisons": [["student-first", "student-ce"], ["teacher", "base"], ["student-ce+ts", "student-ce"]],
        "trajectory": {"model": "teacher"},
        "knowledge": {"models": ["base", "teacher"], "dataset": "countries", "split": "test", "limit": 4, "max_k": 8},
    }


def _run(config: Path, out: Path, home: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(ENV, FIRST_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "first_eval.cli", "run", "--config", str(config), "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, env=env, **kw)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("study")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_study(tiny_model_dir)))
    home = root / "home"
    t0 = time.monotonic()
    proc = _run(config, root / "run1", home, timeout=900)
    cold = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "config": config, "home": home, "out": root / "run1", "log": proc.stderr, "cold": cold}


def test_tiny_study_writes_the_run_directory(tiny_run):
    out = tiny_run["out"]
    for name in ("run.json", "metrics.json", "predictions.parquet", "report.md", "index.html",
                 "trajectory.json", "knowledge.json", "calibration.json"):
        assert (out / name).is_file(), name
    log = tiny_run["log"]
    assert "stages:" in log and "[1/" in log  # the stage list up front, then progress
    assert " left)" in log  # and the time left, once a costed stage has run
    metrics = json.loads((out / "metrics.json").read_text())
    models = {r["model"] for r in metrics["results"]}
    assert models == {"base", "teacher", "teacher-es", "teacher+ts", "teacher+ts-oracle", "student-ce",
                      "student-ce+ts", "student-topk", "student-first"}
    assert {r["dataset"] for r in metrics["results"]} == {"countries", "countries-ood", "mmlu", "val"}
    assert metrics["roles"]["val"] == "validation"
    assert all("ece_ci" in r and "confidence_gap_ci" in r for r in metrics["results"])
    # an arm of two seeds: one row, its replicas' rows beside it
    ce = next(r for r in metrics["results"] if r["model"] == "student-ce" and r["dataset"] == "countries")
    assert ce["n_seeds"] == 2 and ce["seeds"] == [0, 1] and len(ce["accuracy_seeds"]) == 2
    assert {r["model"] for r in metrics["replicas"]} == {"student-ce@0", "student-ce@1", "student-ce+ts@0",
                                                        "student-ce+ts@1"}
    pairs = {(c["model_a"], c["model_b"]) for c in metrics["comparisons"]}
    assert {("teacher", "base"), ("student-ce+ts", "student-ce")} <= pairs
    # Holm's family is the evaluation datasets; validation rows are not evidence
    assert all(("p_holm" in c["differences"]["ece"]) == (c["dataset"] != "val") and "mde" in c["differences"]["ece"]
               for c in metrics["comparisons"])
    env = metrics["environment"]
    assert env["torch_threads"] >= 1 and env["torch"] and "deterministic_algorithms" in env
    # the teachers are checkpoints of one fine-tuning run, picked on validation
    assert set(metrics["selected"]) == {"teacher", "teacher-es"}
    traj = json.loads((out / "trajectory.json").read_text())
    assert {t["dataset"] for t in traj} == {"countries", "countries-ood", "mmlu", "val"}
    steps = sorted({t["step"] for t in traj})
    assert steps[0] == 0 and len(steps) >= 3  # base, checkpoints, final
    rules = {rule for t in traj for rule in t["selected_by"]}
    assert rules == {"val-accuracy", "val-ece"}
    assert all("ece_ci" in t and "confidence_gap_ci" in t for t in traj)
    # Each point is its own model's predictions (not one cache slot shared by every checkpoint).
    one = [t for t in traj if t["dataset"] == "countries"]
    assert len({t["nll"] for t in one}) == len(one)
    cal = json.loads((out / "calibration.json").read_text())
    assert cal[0]["ece_after"] <= cal[0]["ece_before"]
    html = (out / "index.html").read_text()
    assert "<script src=" not in html and 'src="http' not in html  # self-contained: Plotly inlined
    assert "What held and what did not" in html
    md = (out / "report.md").read_text()
    assert "## Headline metrics" in md and "student-first" in md


def test_metrics_json_equals_the_metrics_command(tiny_run):
    out = tiny_run["out"]
    metrics = json.loads((out / "metrics.json").read_text())
    meta = metrics["metadata"]
    assert meta["command"].startswith("first-eval metrics predictions.parquet --json --arms")
    proc = subprocess.run([sys.executable, "-m", "first_eval.cli", "metrics", str(out / "predictions.parquet"),
                           "--json", "--arms", "--bins", str(meta["bins"]), "--scheme", meta["scheme"],
                           "--bootstrap", str(meta["bootstrap"]), "--seed", str(meta["seed"])],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"] == metrics["results"]


def test_report_rebuilds_without_recomputing(tiny_run):
    out = tiny_run["out"]
    (out / "index.html").unlink()
    before = (out / "metrics.json").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "first_eval.cli", "report", str(out)], capture_output=True,
                          text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "index.html").is_file() and (out / "metrics.json").read_bytes() == before


def test_warm_rerun_uses_the_cache(tiny_run):
    t0 = time.monotonic()
    proc = _run(tiny_run["config"], tiny_run["root"] / "run2", tiny_run["home"], timeout=600)
    warm = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((tiny_run["out"] / "metrics.json").read_text())["results"]
    b = json.loads((tiny_run["root"] / "run2" / "metrics.json").read_text())["results"]
    assert a == b  # same inputs, same numbers
    assert warm < tiny_run["cold"]
    # Nothing was trained or scored again: no stage directory was added.
    stages = sorted(p.name for p in (tiny_run["home"] / "stages").iterdir())
    assert all((tiny_run["home"] / "stages" / s / "DONE").is_file() for s in stages)


def test_a_rerun_into_an_existing_run_directory_replaces_its_files(tiny_run):
    from first_eval.rundir import find_runs

    root = tiny_run["root"]
    out = root / "run3"
    for _ in range(2):
        proc = _run(tiny_run["config"], out, tiny_run["home"], timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "index.html").is_file() and (out / "run.json").is_file()
    assert not list(root.glob(".*partial*"))  # the staging directory is gone
    assert f"first-eval report {out}" in (out / "report.md").read_text()  # names where it lives
    # A staging directory (a run killed while writing) is never offered as a run.
    shutil.copytree(out, root / ".run4.partial")
    assert out in find_runs(root) and root / ".run4.partial" not in find_runs(root)


def test_a_killed_run_resumes_from_its_cache(tmp_path, tiny_model_dir):
    cfg = tiny_study(tiny_model_dir)
    cfg["models"] = cfg["models"][:3]  # base, teacher, teacher+ts
    cfg["comparisons"], cfg["knowledge"] = [["teacher", "base"]], None
    cfg["models"][1]["finetune"]["limit"] = 40
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(cfg))
    home = tmp_path / "home"
    env = dict(ENV, FIRST_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "first_eval.cli", "run", "--config", str(config),
                             "--out", str(tmp_path / "run"), "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill it once the teacher has written its first checkpoint, mid-fine-tuning.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if list(home.glob("stages/finetune-*/model/checkpoints/step-*")):
            break
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run").exists()  # nothing half-written: the run directory appears complete
    done_before = {p.parent.name for p in home.glob("stages/*/DONE")}
    resumed = _run(config, tmp_path / "run", home, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resum" in resumed.stderr.lower()  # the trainer picked up its checkpoint
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "run", "s.yaml"]  # no staging left
    assert done_before <= {p.parent.name for p in home.glob("stages/*/DONE")}
