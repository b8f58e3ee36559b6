"""The ``first-train`` commands: extract → calibrate → distill round trip, refusals, pipeline caching."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from first_eval.errors import UserError
from first_train.cli import app, main
from first_train.config import CalibrateConfig, DistillConfig, ExtractConfig
from first_train.store import TopKStore

REPO = Path(__file__).resolve().parents[2]
LOSSES = ("first", "first-authors", "topk", "topk-rest", "rs-kd", "full-kd", "ce")


@pytest.fixture(scope="module")
def tiny_teacher_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model fine-tuned on 32 countries/train items until its answers are confident."""
    from first_train.config import FinetuneConfig
    from first_train.finetune import run_finetune

    out = tmp_path_factory.mktemp("tiny-teacher") / "teacher"
    run_finetune(FinetuneConfig(model=str(tiny_model_dir), dataset="countries", split="train", limit=32,
                                out=str(out), max_steps=24, progress=False, lr=1e-2, batch_size=8))
    return out


@pytest.fixture(scope="module")
def tiny_store_dir(tmp_path_factory, tiny_teacher_dir) -> Path:
    """The tiny teacher's top-5 (plus 4 RS-KD samples) on its 32 train items, uncalibrated."""
    from first_train.extract import run_extract

    out = tmp_path_factory.mktemp("tiny-store") / "store"
    run_extract(ExtractConfig(teacher=str(tiny_teacher_dir), dataset="countries", split="train", limit=32,
                              k=5, rs_samples=4, out=str(out), progress=False))
    return out


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.out, captured.err


def one_error_line(err: str) -> str:
    """The single ``error: …`` line of a failed command (progress bars of model loading aside)."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert "Traceback" not in err and sum(line.startswith("error:") for line in lines) == 1, err
    assert lines[-1].startswith("error:"), err
    return lines[-1]


@pytest.fixture(scope="module")
def calibrated_store(tmp_path_factory, tiny_store_dir, tiny_teacher_dir) -> Path:
    """A copy of the tiny store, calibrated on 32 val items with both methods."""
    from first_train.calibrate import run_calibrate

    store = tmp_path_factory.mktemp("calibrated") / "store"
    shutil.copytree(tiny_store_dir, store)
    result = run_calibrate(CalibrateConfig(store=str(store), teacher=str(tiny_teacher_dir), dataset="countries",
                                           split="val", limit=32, method="both", progress=False))
    store.with_name("result.json").write_text(json.dumps(result))
    return store


def _store_with_calibration(tmp_path_factory, tiny_store_dir, name: str, method: str, temperature: float) -> Path:
    """A copy of the tiny store with a given calibration recorded (what a fit on another machine
    may or may not choose: the tests that need one kind must not depend on the fit)."""
    store = tmp_path_factory.mktemp(name) / "store"
    shutil.copytree(tiny_store_dir, store)
    TopKStore(store).set_calibration(method=method, temperature=temperature, ece_before=0.2, ece_after=0.1)
    return store


@pytest.fixture(scope="module")
def reshape_store(tmp_path_factory, tiny_store_dir) -> Path:
    """The tiny store calibrated with the re-shaping c = 0.5."""
    return _store_with_calibration(tmp_path_factory, tiny_store_dir, "reshaped", "reshape", 0.5)


@pytest.fixture(scope="module")
def temperature_store(tmp_path_factory, tiny_store_dir) -> Path:
    """The tiny store calibrated with a logit temperature T = 2."""
    return _store_with_calibration(tmp_path_factory, tiny_store_dir, "tempered", "temperature", 2.0)


# ------------------------------------------------------------------------------- the CLI surface


def test_every_option_of_every_command_has_help(capsys):
    from first_train.cli import _register

    _register()
    import typer.main

    group = typer.main.get_command(app)
    assert set(group.commands) == {"finetune", "extract", "calibrate", "distill", "pipeline"}
    for name, command in group.commands.items():
        assert command.help, name
        for param in command.params:
            if param.name != "help":
                assert getattr(param, "help", None), f"{name} --{param.name} has no help"


def test_bad_options_give_one_line_errors(capsys, tiny_model_dir, tmp_path):
    code, _, err = run_cli(["finetune", "--model", str(tiny_model_dir), "--dataset", "countries",
                            "--out", str(tmp_path / "x"), "--lr", "-1"], capsys)
    assert code == 2 and err.strip() == "error: --lr must be > 0, got -1.0"
    code, _, err = run_cli(["distill", "--student", str(tiny_model_dir), "--store", str(tmp_path / "none"),
                            "--out", str(tmp_path / "y")], capsys)
    assert code == 2 and one_error_line(err).startswith("error: --store")
    code, _, err = run_cli(["extract", "--teacher", str(tiny_model_dir), "--dataset", "countries",
                            "--out", str(tmp_path / "z"), "--k", "0"], capsys)
    assert code == 2 and "--k must be in [1, 255]" in err


# ------------------------------------------------------------------------------- extract


def test_store_holds_the_teachers_top5_at_every_answer_position(tiny_store_dir, tiny_teacher_dir):
    import torch

    from first_eval.zoo import load_model
    from first_train.data import collate, kept_logits, load_examples, tokenizer_fingerprint

    store = TopKStore(tiny_store_dir)
    model, tokenizer = load_model(str(tiny_teacher_dir))
    _, examples = load_examples("countries", "train", 32, tokenizer)
    m = store.manifest
    assert (m["k"], m["n_sequences"], m["n_positions"], m["positions"]) == (5, 32, 32, "response")
    assert m["tokenizer_hash"] == tokenizer_fingerprint(tokenizer) and m["vocab_size"] == 49152
    assert store.size().payload_bytes_per_position == 16  # vs 98,304 for a full fp16 row
    with torch.no_grad():
        logits = kept_logits(model, collate(examples[:4], pad_id=0))[0]
    probs = torch.softmax(logits, -1)
    for row, e in enumerate(examples[:4]):
        ids, stored = store.get(e.id)
        top = torch.topk(probs[row], 5)
        assert ids[0].tolist() == top.indices.tolist()
        assert torch.all(stored[0] <= top.values + 1e-7) and torch.allclose(stored[0], top.values, atol=1e-3)
        assert store.start(e.id) == e.answer_position
    assert (store.get_rs(examples[0].id)[1].sum() - 1).abs() < 1e-6


def test_extraction_resumes_to_byte_identical_shards(tmp_path, tiny_teacher_dir, monkeypatch):
    import first_train.extract as extract

    common = dict(teacher=str(tiny_teacher_dir), dataset="countries", split="train", limit=24, k=5, rs_samples=3,
                  batch_size=4, chunk_sequences=8, progress=False)
    extract.run_extract(ExtractConfig(out=str(tmp_path / "a"), **common))

    real, calls = extract.teacher_batches, {"n": 0}

    def die_on_batch_4(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(extract, "teacher_batches", die_on_batch_4)
    with pytest.raises(KeyboardInterrupt):
        extract.run_extract(ExtractConfig(out=str(tmp_path / "b"), **common))
    assert not (tmp_path / "b" / "manifest.json").exists()
    assert len(list((tmp_path / "b").glob("topk-*.safetensors"))) == 1  # 8 of 24 sequences persisted
    monkeypatch.setattr(extract, "teacher_batches", real)
    resumed = extract.run_extract(ExtractConfig(out=str(tmp_path / "b"), **common))
    assert resumed.new_sequences == 16
    names = sorted(p.name for p in (tmp_path / "a").glob("*.safetensors"))
    assert names == sorted(p.name for p in (tmp_path / "b").glob("*.safetensors")) and len(names) == 6
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# ------------------------------------------------------------------------------- calibrate


def test_answer_distribution_from_topk_by_hand():
    from first_train.calibrate import answer_probs_from_topk

    ids = np.array([[10, 11, 99, 12, 98], [97, 98, 99, 96, 95]])
    p = np.array([[0.5, 0.2, 0.15, 0.1, 0.05], [0.4, 0.3, 0.2, 0.05, 0.05]])
    options = np.array([[10, 11, 12, 13], [10, 11, -1, -1]])
    q = answer_probs_from_topk(ids, p, options)
    np.testing.assert_allclose(q[0], [0.5 / 0.8, 0.2 / 0.8, 0.1 / 0.8, 0.0])  # letter D not in the top-k
    np.testing.assert_allclose(q[1], [0.5, 0.5, 0.0, 0.0])  # no letter in the top-k: uniform over 2
    c = 0.3
    e = np.exp(p[0] / c)
    expected = np.array([e[0], e[1], e[3], 0.0]) / (e[0] + e[1] + e[3])
    np.testing.assert_allclose(answer_probs_from_topk(ids, p, options, c=c)[0], expected)


@pytest.mark.parametrize("seed", range(6))
def test_calibration_grid_never_raises_validation_ece(seed):
    from first_train.calibrate import TeacherReadout, fit_logit_temperature, fit_reshape

    rng = np.random.default_rng(seed)
    n, k, v = 120, 5, 50
    sharp = rng.uniform(0.5, 6.0)
    logits = rng.normal(size=(n, v)) * sharp
    labels = rng.integers(0, 4, n)
    options = np.tile(np.arange(4), (n, 1))
    logits[np.arange(n), labels] += rng.uniform(0, 3)  # an informative, mis-calibrated teacher
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    order = np.argsort(-p, axis=1)[:, :k]
    readout = TeacherReadout(order, np.take_along_axis(p, order, 1), options, logits[:, :4], labels)
    for fit in (fit_reshape(readout), fit_logit_temperature(readout)):
        assert fit["ece_after"] <= fit["ece_before"] + 1e-12
        assert fit["ece_after"] == min([fit["ece_before"]] + [e for _, e in fit["grid"]])
        assert fit["temperature"] is None or fit["temperature"] > 0


def test_calibrate_records_the_fit_in_the_manifest(calibrated_store):
    result = json.loads(calibrated_store.with_name("result.json").read_text())
    calibration = TopKStore(calibrated_store).calibration
    assert calibration == result["chosen"]
    assert calibration["method"] in ("reshape", "temperature")
    for fit in result["fits"].values():
        assert fit["ece_after"] <= fit["ece_before"]
        assert fit["grid"] and all(c > 0 for c, _ in fit["grid"])
    reshape = result["fits"]["reshape"]
    coarse = [c for c, _ in reshape["grid"][:10]]
    assert coarse == pytest.approx([0.1 * i for i in range(1, 11)])
    assert result["chosen"]["ece_after"] == min(f["ece_after"] for f in result["fits"].values())


# ------------------------------------------------------------------------------- distill


# Each step's loss is of another batch of the 32 stored items, so "the last below the first" compares
# batches. For first-authors (small and flat at c = 0.5) the batch noise is larger than 4 steps' descent
# on the countries v2 items (0.0321 -> 0.0339); with every step on all 32 items it is one batch, and
# the descent shows.
BATCH = {"first-authors": 32}


@pytest.mark.parametrize("loss", LOSSES)
def test_distill_every_loss_writes_a_model_the_scorer_loads(loss, tmp_path, calibrated_store, reshape_store,
                                                           tiny_model_dir):
    from first_eval.data import load_dataset
    from first_eval.scorer import Scorer
    from first_eval.zoo import load_model
    from first_train.distill import run_distill

    if loss == "first-authors":  # both sides re-shaped: needs a reshape c (the "both" fit may choose a logit T)
        calibrated_store = reshape_store

    out = tmp_path / loss
    result = run_distill(DistillConfig(student=str(tiny_model_dir), store=str(calibrated_store), out=str(out),
                                       loss=loss, alpha=0.1 if loss == "topk" else 0.0, max_steps=4,
                                       progress=False, lr=1e-2, batch_size=BATCH.get(loss, 8)))
    assert result.steps == 4 and all(np.isfinite(result.losses))
    assert result.losses[-1] < result.losses[0]
    record = json.loads((out / "first_train.json").read_text())
    assert record["loss"] == loss and record["stage"] == "distill"
    if loss in ("first", "first-authors"):
        assert record["calibration"] == TopKStore(calibrated_store).calibration
    if loss == "first-authors":  # the student side re-shaped with the fitted c unless told otherwise
        assert record["student_c"] is not None
        assert record["student_c"] == TopKStore(calibrated_store).calibration["temperature"]
    model, tokenizer = load_model(str(out))
    scores = Scorer(model, tokenizer, progress=False).score(load_dataset("countries", split="test", limit=3))
    assert len(scores) == 3 and all(abs(sum(s.probs) - 1) < 1e-6 for s in scores)


def test_the_authors_options_are_recorded_and_checked(tmp_path, calibrated_store, reshape_store, temperature_store,
                                                      tiny_model_dir, capsys):
    from first_train.distill import run_distill

    out = tmp_path / "smoothed"
    run_distill(DistillConfig(student=str(tiny_model_dir), store=str(reshape_store), out=str(out), loss="first",
                              student_c=0.7, label_smoothing=0.1, max_steps=2, progress=False, lr=1e-2))
    record = json.loads((out / "first_train.json").read_text())
    assert record["student_c"] == 0.7 and record["label_smoothing"] == 0.1
    for argv, message in [(["--loss", "topk", "--student-c", "0.5"], "--student-c applies to --loss first"),
                          (["--loss", "ce", "--label-smoothing", "0.1"], "--label-smoothing applies to the top-k"),
                          (["--loss", "first", "--norm-eps", "1e-6"], "--norm-eps applies to --loss topk")]:
        code, _, err = run_cli(["distill", "--student", str(tiny_model_dir), "--store", str(calibrated_store),
                                "--out", str(tmp_path / "x"), *argv], capsys)
        assert code == 2 and message in one_error_line(err)
    code, _, err = run_cli(["distill", "--student", str(tiny_model_dir), "--store", str(temperature_store),
                            "--out", str(tmp_path / "y"), "--loss", "first-authors"], capsys)
    assert code == 2 and "calibrated with a logit temperature" in one_error_line(err)


def test_first_needs_a_calibrated_store_and_rs_kd_needs_samples(tmp_path, tiny_store_dir, tiny_model_dir, capsys):
    code, _, err = run_cli(["distill", "--student", str(tiny_model_dir), "--store", str(tiny_store_dir),
                            "--out", str(tmp_path / "s"), "--loss", "first", "--max-steps", "1"], capsys)
    line = one_error_line(err)
    assert code == 2 and "needs a calibrated store" in line and "first-train calibrate" in line


def test_a_student_with_another_vocabulary_is_refused(tmp_path, calibrated_store, tiny_llama, capsys):
    from tiny_models import make_tiny_llama

    _, tokenizer = tiny_llama
    other = copy.deepcopy(tokenizer)
    other.add_tokens(["<an-extra-token>"])
    student = make_tiny_llama(other)
    path = tmp_path / "other-vocab"
    student.save_pretrained(path)
    other.save_pretrained(path)
    capsys.readouterr()
    code, _, err = run_cli(["distill", "--student", str(path), "--store", str(calibrated_store),
                            "--out", str(tmp_path / "s"), "--loss", "topk", "--max-steps", "1"], capsys)
    line = one_error_line(err)
    assert code == 2 and "does not share the teacher's vocabulary" in line and "49152" in line and "49153" in line
    assert not (tmp_path / "s" / "first_train.json").exists()


# ------------------------------------------------------------------------------- pipeline


def test_pipeline_runs_every_stage_once_and_then_skips_them(tmp_path, tiny_model_dir, capsys):
    data = yaml.safe_load((REPO / "configs" / "pipeline_tiny.yaml").read_text())
    data["teacher"]["model"] = str(tiny_model_dir)
    for student in data["students"]:
        student["student"] = str(tiny_model_dir)
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"

    code, stdout, _ = run_cli(["pipeline", "--config", str(config), "--out", str(out)], capsys)
    assert code == 0, stdout
    summary = json.loads((out / "pipeline_summary.json").read_text())
    stages = summary["stages"]
    assert list(stages) == ["finetune", "extract", "calibrate", "distill:first", "distill:ce", "evaluate"]
    assert not any(s["skipped"] for s in stages.values())
    assert {r["model"] for r in stages["evaluate"]["results"]} == {"base", "teacher", "first", "ce"}
    assert TopKStore(out / "store").calibration is not None
    for name in ("teacher", "students/first", "students/ce"):
        assert (out / name / "first_train.json").is_file() and (out / name / "model.safetensors").is_file()
    assert "teacher" in stdout and "ECE" in stdout

    code, stdout, _ = run_cli(["pipeline", "--config", str(config), "--out", str(out)], capsys)
    assert code == 0
    again = json.loads((out / "pipeline_summary.json").read_text())["stages"]
    assert all(s["skipped"] for s in again.values()), {k: s["skipped"] for k, s in again.items()}
    assert again["evaluate"]["results"] == stages["evaluate"]["results"]

    data["students"][1]["lr"] = 5e-3  # change one student: only it is trained again
    config.write_text(yaml.safe_dump(data))
    code, _, _ = run_cli(["pipeline", "--config", str(config), "--out", str(out)], capsys)
    third = json.loads((out / "pipeline_summary.json").read_text())["stages"]
    assert code == 0 and [k for k, s in third.items() if not s["skipped"]] == ["distill:ce", "evaluate"]


def test_pipeline_config_errors_are_user_errors(tmp_path):
    from first_train.pipeline import load_pipeline_config

    with pytest.raises(UserError, match="unknown key 'studnets'"):
        load_pipeline_config({"teacher": {"model": "m"}, "studnets": []})
    with pytest.raises(UserError, match="teacher.model is required"):
        load_pipeline_config({"teacher": {}})
    with pytest.raises(UserError, match=r"students\[0\].*--loss must be one of"):
        load_pipeline_config({"teacher": {"model": "m"}, "students": [{"name": "s", "student": "m", "loss": "kl"}]})
    with pytest.raises(UserError, match="unknown key 'learning_rate'"):
        load_pipeline_config({"teacher": {"model": "m", "finetune": {"learning_rate": 1.0}}})
    default = load_pipeline_config(REPO / "configs" / "pipeline_default.yaml")
    assert [s.config.loss for s in default.students] == ["first", "ce"]
    assert default.extract.k == 5 and default.calibrate.split == "val"
