"""`first-eval import lm-eval` on files that real harness runs wrote (tests/fixtures/lm_eval).

v0.4.13 wrote samples_<task>_<date>.jsonl with every number as a string; v0.4.2 wrote one JSON
array per task with numbers and booleans; v0.4.13-chat read the same model through its chat template
(no space before each choice). make_fixture.py beside them says how each was made.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from first_eval.errors import UserError
from first_eval.imports.lm_eval import _label, read_lm_eval, read_tasks
from first_eval.predictions import read_predictions
from first_eval.results import compute_results

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval"
NEW, OLD, CHAT = FIXTURES / "v0.4.13", FIXTURES / "v0.4.2", FIXTURES / "v0.4.13-chat"
MC_TASKS = ("first_countries_letters", "first_mmlu_text")


def _samples(directory: Path, task: str) -> list[dict]:
    """The harness' own per-sample records, parsed independently of the importer."""
    path = next(p for p in directory.rglob("*.jsonl") if p.name.startswith(f"samples_{task}_")
                or p.stem.endswith(f"_{task}"))
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x]


def _harness_results(directory: Path) -> dict:
    path = next(p for p in directory.rglob("*.json") if p.name.startswith("results"))
    return json.loads(path.read_text())["results"]


@pytest.mark.parametrize("directory", [NEW, OLD, CHAT], ids=["0.4.13", "0.4.2", "0.4.13-chat"])
@pytest.mark.parametrize("reading", ["acc", "acc_norm"])
def test_accuracy_and_brier_equal_the_harness_own(directory, reading):
    tasks = {t.task: t for t in read_tasks([directory], reading=reading)}
    assert set(tasks) == set(MC_TASKS)  # the generative task is skipped
    harness = _harness_results(directory)
    for name in MC_TASKS:
        rows = tasks[name].rows
        samples = _samples(directory, name)
        assert len(rows) == len(samples) == 16
        # Per sample: our argmax is right exactly when the harness scored it right.
        for row, sample in zip(rows, samples):
            assert float(int(np.argmax(row["probs"])) == row["label"]) == float(sample[reading]), (name, row["id"])
        acc = np.mean([int(np.argmax(r["probs"])) == r["label"] for r in rows])
        assert acc == pytest.approx(harness[name][f"{reading},none"], abs=1e-12)
        if reading == "acc":
            brier = np.mean([((np.asarray(r["probs"]) - np.eye(len(r["probs"]))[r["label"]]) ** 2).sum()
                             for r in rows])
            assert brier == pytest.approx(harness[name]["brier_score,none"], rel=1e-9)


def test_probabilities_are_the_softmax_of_the_loglikelihoods():
    samples = _samples(NEW, "first_mmlu_text")
    task = next(t for t in read_tasks([NEW]) if t.task == "first_mmlu_text")
    for row, sample in zip(task.rows, samples):
        # acc_mutual_info: 4 conditional requests, then 4 unconditional ("", choice) ones.
        lls = np.array([float(r[0]) for r in sample["filtered_resps"]])
        assert len(lls) == 8 and sample["arguments"]["gen_args_4"]["arg_0"] == ""
        expected = np.exp(lls[:4] - lls[:4].max())
        np.testing.assert_allclose(row["probs"], expected / expected.sum(), rtol=1e-12)
        assert row["n_options"] == 4 and "option_mass" not in row  # multi-token choices: no next-token mass


def test_both_encodings_and_layouts_read_the_same_numbers():
    """0.4.2 interleaves the unconditional requests and writes numbers; 0.4.13 appends them and
    writes strings: the same model and data give the same rows."""
    new = read_lm_eval([NEW]).frame.set_index(["dataset", "id"]).sort_index()
    old = read_lm_eval([OLD]).frame.set_index(["dataset", "id"]).sort_index()
    assert list(new.index) == list(old.index)
    np.testing.assert_allclose(np.stack(new["probs"]), np.stack(old["probs"]), atol=1e-6)
    assert (new["label"] == old["label"]).all()


def test_ids_option_mass_prompt_and_model_name():
    frame = read_lm_eval([NEW]).frame
    letters = frame[frame["dataset"] == "first_countries_letters"]
    assert letters["id"].str.startswith("countries/").all()  # the doc's own id field
    lls = [[float(r[0]) for r in s["filtered_resps"]] for s in _samples(NEW, "first_countries_letters")]
    np.testing.assert_allclose(letters["option_mass"], [np.exp(x).sum() for x in lls], rtol=1e-12)
    mmlu = frame[frame["dataset"] == "first_mmlu_text"]
    assert list(mmlu["id"]) == [f"first_mmlu_text/{i}" for i in range(16)]  # no id field: <task>/<doc_id>
    assert mmlu["subject"].notna().all()
    assert letters["prompt"].iloc[0].startswith("Question: ") and letters["prompt"].iloc[0].endswith("Answer:")
    assert set(frame["model"]) == {"SmolLM2-135M-Instruct"}
    assert set(frame["reading"]) == {"lm-eval:acc"}
    assert set(read_lm_eval([OLD]).frame["model"]) == {"SmolLM2-135M-Instruct"}  # from model_args
    assert set(read_lm_eval([NEW], model="mine").frame["model"]) == {"mine"}


def test_chat_template_continuations_have_no_delimiter():
    sample = _samples(CHAT, "first_countries_letters")[0]
    assert sample["arguments"]["gen_args_0"]["arg_1"] == "A"  # the harness dropped the space
    letters = next(t for t in read_tasks([CHAT]) if t.task == "first_countries_letters")
    assert all("option_mass" in r for r in letters.rows)


def test_a_generative_task_is_skipped_with_one_note():
    result = read_lm_eval([NEW])
    assert "first_countries_gen" not in set(result.frame["dataset"])
    notes = [n for n in result.notes if "first_countries_gen" in n]
    assert len(notes) == 1 and "generate_until" in notes[0] and "16 samples" in notes[0]


@pytest.mark.parametrize("pick", ["results", "samples"])
def test_a_results_file_or_a_samples_file_may_be_named(pick):
    run = next(NEW.iterdir())
    if pick == "results":
        path = next(run.glob("results_*.json"))
        assert set(read_lm_eval([path]).frame["dataset"]) == set(MC_TASKS)
    else:
        path = next(run.glob("samples_first_countries_letters_*.jsonl"))
        result = read_lm_eval([path])
        assert set(result.frame["dataset"]) == {"first_countries_letters"}
        assert "harness acc 0.3750" in " ".join(result.notes)  # the results file beside it was read


def test_only_the_chosen_tasks_and_a_missing_one_is_an_error():
    assert set(read_lm_eval([NEW], tasks=["first_mmlu_text"]).frame["dataset"]) == {"first_mmlu_text"}
    with pytest.raises(UserError, match="no samples for task nope"):
        read_lm_eval([NEW], tasks=["nope"])


def _copy(tmp_path: Path, directory: Path = NEW) -> Path:
    dst = tmp_path / directory.name
    shutil.copytree(directory, dst)
    return dst


def test_a_malformed_line_names_file_and_line(tmp_path):
    root = _copy(tmp_path)
    path = next(root.rglob("samples_first_countries_letters_*.jsonl"))
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:40]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"{path.name}:3: malformed JSON"):
        read_lm_eval([root])


def test_a_bad_loglikelihood_names_file_and_line(tmp_path):
    root = _copy(tmp_path)
    path = next(root.rglob("samples_first_countries_letters_*.jsonl"))
    lines = path.read_text().splitlines()
    rec = json.loads(lines[4])
    rec["filtered_resps"][1][0] = "not-a-number"
    lines[4] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"{path.name}:5: expected a log-likelihood"):
        read_lm_eval([root])


def test_other_filters_are_skipped_and_filter_picks_them(tmp_path):
    root = _copy(tmp_path)
    path = next(root.rglob("samples_first_countries_letters_*.jsonl"))
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    extra = [dict(r, filter="strict") for r in recs]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs + extra))
    result = read_lm_eval([path])
    assert len(result.frame) == 16
    assert any("skipped 16 samples of strict" in n for n in result.notes)
    strict = read_lm_eval([path], filter_name="strict")
    assert len(strict.frame) == 16


def test_targets_read_as_the_harness_reads_them():
    lls = np.log(np.array([0.1, 0.7, 0.2]))
    choices = ["Paris", "Lyon", "Nice"]
    assert _label(1, choices, lls, None, "w") == 1  # 0.4.2: the raw int
    assert _label("1", choices, lls, None, "w") == 1  # 0.4.13: its string
    assert _label("Nice", choices, lls, None, "w") == 2  # a choice's text
    assert _label("[0, 1]", choices, lls, None, "w") is None  # several gold answers
    # Numbers as choices: "0" is index 0 or the choice "0" (index 1); the sample's acc decides.
    numbers = ["1", "0", "2"]
    assert _label("0", numbers, lls, "1.0", "w") == 1  # argmax is 1 and the harness says right
    assert _label("0", numbers, lls, "0.0", "w") == 0
    with pytest.raises(UserError, match="neither an index nor one of the choices"):
        _label("Rome", choices, lls, None, "w")
    with pytest.raises(UserError, match="out of range"):
        _label(5, choices, lls, None, "w")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "first_eval.cli", *args], capture_output=True, text=True)


def test_cli_imports_and_the_table_validates(tmp_path):
    out = tmp_path / "preds.jsonl"
    proc = _cli("import", "lm-eval", str(NEW), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "wrote 32 predictions" in proc.stdout
    assert "skipped task first_countries_gen" in proc.stderr
    assert "(harness acc 0.3750), Brier 1.0510 (harness brier_score 1.0510)" in proc.stderr
    frame = read_predictions(out)
    assert len(frame) == 32 and set(frame["dataset"]) == set(MC_TASKS)
    # The metrics core reads the written table to the harness' own accuracy and Brier score.
    harness = _harness_results(NEW)
    for r in compute_results(frame, n_bins=10, scheme="width", bootstrap=0, seed=0):
        assert r["accuracy"] == pytest.approx(harness[r["dataset"]]["acc,none"], abs=1e-12)
        assert r["brier"] == pytest.approx(harness[r["dataset"]]["brier_score,none"], rel=1e-9)


def test_cli_malformed_input_is_one_line_exit_2_and_nothing_written(tmp_path):
    root = _copy(tmp_path)
    path = next(root.rglob("samples_first_mmlu_text_*.jsonl"))
    path.write_text(path.read_text() + "{not json\n")
    out = tmp_path / "preds.jsonl"
    proc = _cli("import", "lm-eval", str(root), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and ":17: malformed JSON" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_cli_a_directory_without_samples_is_an_error(tmp_path):
    proc = _cli("import", "lm-eval", str(tmp_path), "--out", str(tmp_path / "p.jsonl"))
    assert proc.returncode == 2 and "no samples files" in proc.stderr
