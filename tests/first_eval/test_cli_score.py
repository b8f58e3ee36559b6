"""`first-eval score`: writes a valid predictions table (JSONL and Parquet) equal to the library's
scores, k-shot from a split other than the scored one, one-line errors with exit status 2, no torch
at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from first_eval.predictions import read_predictions

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")

QUESTIONS = [
    {"id": "q0", "question": "What is the capital of France?", "choices": ["Lyon", "Paris", "Nice"],
     "answer": 1, "subject": "capital"},
    {"id": "q1", "question": "2 + 2 = ?", "choices": ["3", "4"], "answer": "B", "subject": "math"},
    {"id": "q2", "question": "Which planet is called the red planet?", "choices": ["Venus", "Mars", "Earth",
     "Jupiter"], "answer": 1, "subject": "science"},
    {"id": "q3", "question": "Colour of the sky on a clear day?", "choices": ["Blue", "Green", "Red", "Black"],
     "answer": 0, "subject": "science"},
]


def _cli(*args, check=True, timeout=300):
    proc = subprocess.run([sys.executable, "-c", "from first_eval.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.jsonl"
    rows = [dict(q, split="test") for q in QUESTIONS] + [
        {"id": f"t{i}", "question": f"{i} + 1 = ?", "choices": [str(i), str(i + 1)], "answer": 1, "split": "train"}
        for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_writes_the_library_scores(tiny_llama, tiny_model_dir, data_file, tmp_path):
    from first_eval.data import load_dataset
    from first_eval.scorer import Scorer

    out = tmp_path / "preds.jsonl"
    proc = _cli("score", "--model", tiny_model_dir, "--dataset", data_file, "--split", "test", "--out", out,
                "--name", "tiny", "--no-progress")
    assert "wrote 4 predictions" in proc.stdout and "questions/s" in proc.stdout
    frame = read_predictions(out)
    assert list(frame["id"]) == ["q0", "q1", "q2", "q3"]
    assert set(frame["model"]) == {"tiny"} and set(frame["dataset"]) == {"toy"}
    assert list(frame["n_options"]) == [3, 2, 4, 4]
    assert list(frame["subject"]) == ["capital", "math", "science", "science"]
    model, tok = tiny_llama
    expect = Scorer(model, tok, progress=False).score(load_dataset(str(data_file), split="test"))
    for got, want in zip(frame.to_dict("records"), expect):
        np.testing.assert_allclose(got["probs"], want.probs, atol=1e-6, rtol=0)
        assert got["prompt"] == want.prompt and got["top1_correct"] == want.top1_correct
        assert got["option_mass"] == pytest.approx(want.option_mass, abs=1e-6)


def test_kshot_chat_parquet(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "preds.parquet"
    _cli("score", "--model", tiny_model_dir, "--dataset", data_file, "--split", "test", "--shots", "2",
         "--template", "chat", "--batch-tokens", "64", "--limit", "3", "--out", out, "--no-progress")
    frame = read_predictions(out)
    assert len(frame) == 3
    for prompt in frame["prompt"]:
        assert prompt.count("<|im_start|>user") == 3  # two worked examples from train, then the question
        assert "0 + 1 = ?" in prompt and "1 + 1 = ?" in prompt and "2 + 1 = ?" not in prompt
        assert prompt.endswith("<|im_start|>assistant\n")


def test_option_text_columns(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "preds.jsonl"
    _cli("score", "--model", tiny_model_dir, "--dataset", data_file, "--split", "test", "--option-text",
         "--out", out, "--no-progress")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(len(r["option_loglik"]) == r["n_options"] and isinstance(r["acc_norm"], bool) for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/preds.csv"], "expected a .jsonl or .parquet"),
    (["--template", "fancy"], "Invalid value for '--template'"),
    (["--shots", "9", "--split", "test"], "asked for 9 few-shot examples but the pool has only 4"),
    (["--batch-tokens", "0"], "Invalid value for '--batch-tokens'"),
    (["--shots", "2", "--split", "test", "--fewshot-split", "test"], "'test' of '{data}' is the split being scored"),
    (["--shots", "2", "--split", "test", "--fewshot-split", "val"], "has no split 'val' for few-shot examples"),
    (["--shots", "2"], "all 4 of its items are being scored (every split is being scored; score one split)"),
])
def test_errors_are_one_line(tiny_model_dir, data_file, tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    out = [] if "--out" in args else ["--out", tmp_path / "p.jsonl"]
    proc = _cli("score", "--model", tiny_model_dir, "--dataset", data_file, *out, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message.format(data=data_file) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "p.jsonl").exists()


@pytest.fixture(scope="module")
def unsplit_file(tmp_path_factory):
    """The QUESTIONS with no split field: load_dataset(file, split="train") would relabel them all."""
    path = tmp_path_factory.mktemp("unsplit") / "plain.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


@pytest.mark.parametrize("dataset, split, message", [
    ("plain", "test", "few-shot examples for '{plain}' need a split other than the scored one ('test'); its "
     "records carry no 'split' field"),
    ("plain", None, "few-shot examples for '{plain}' need a split of their own"),
    ("mmlu", None, "few-shot examples for 'mmlu' need a split other than the scored one ('test'); it has only: "
     "test. Use 0 shots"),
    ("countries-ood", "test", "few-shot examples for 'countries-ood' need a split other than the scored one"),
])
def test_shots_without_another_split_is_one_line(tiny_model_dir, unsplit_file, tmp_path, dataset, split, message):
    dataset = unsplit_file if dataset == "plain" else dataset
    out = tmp_path / "p.jsonl"
    args = ["--split", split] if split else []
    proc = _cli("score", "--model", tiny_model_dir, "--dataset", dataset, *args, "--limit", "2", "--shots", "2",
                "--out", out, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert message.format(plain=unsplit_file) in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_zero_shots_needs_no_other_split(tiny_model_dir, unsplit_file, tmp_path, capsys):
    import torch

    from first_eval.cli import main

    out = tmp_path / "p.jsonl"  # in-process (torch is loaded already); --threads leaves torch's setting alone
    with pytest.raises(SystemExit) as exit_:
        main(["score", "--model", str(tiny_model_dir), "--dataset", str(unsplit_file), "--split", "test",
              "--out", str(out), "--no-progress", "--threads", str(torch.get_num_threads())])
    assert exit_.value.code == 0
    assert "wrote 4 predictions" in capsys.readouterr().out
    assert all(r["prompt"].count("Question:") == 1 for r in map(json.loads, out.read_text().splitlines()))


def test_missing_dataset_and_model_are_one_line(tiny_model_dir, data_file, tmp_path):
    proc = _cli("score", "--model", tiny_model_dir, "--dataset", tmp_path / "nope.jsonl", "--out", tmp_path / "p.jsonl",
                check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and len(proc.stderr.splitlines()) == 1
    proc = _cli("score", "--model", tmp_path / "no-model", "--dataset", data_file, "--out", tmp_path / "p.jsonl",
                check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and len(proc.stderr.splitlines()) == 1


def test_cli_module_imports_no_torch():
    code = ("import sys, first_eval.cli.score, first_eval.prompts; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV, timeout=60)


@pytest.mark.slow
def test_score_smollm2_mmlu(tmp_path):
    out = tmp_path / "mmlu.jsonl"
    proc = _cli("score", "--model", "smollm2-135m", "--dataset", "mmlu", "--limit", "20", "--out", out,
                "--no-progress", timeout=600)
    frame = read_predictions(out)
    assert len(frame) == 20 and set(frame["dataset"]) == {"mmlu"} and set(frame["model"]) == {"smollm2-135m"}
    assert frame["prompt"].str.endswith("\nAnswer:").all()
    assert "accuracy" in proc.stdout
