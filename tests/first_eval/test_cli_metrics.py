"""`first-eval metrics`: the JSON schema, the table, --compare, and one-line errors (no traceback)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from first_eval.calibration import metric_suite
from first_eval.predictions import write_predictions

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def _cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-c", "from first_eval.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def preds(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = []
    labels = rng.integers(4, size=200)
    for model, sharp in (("teacher", 4.0), ("student", 1.0)):
        for dataset in ("countries", "mmlu"):
            for i in range(200):
                logits = rng.normal(size=4) * sharp
                logits[labels[i]] += 1.5  # better than chance, over-confident for the teacher
                p = np.exp(logits - logits.max())
                p /= p.sum()
                rows.append({"model": model, "dataset": dataset, "id": f"q{i}", "probs": p.tolist(),
                             "label": int(labels[i])})
    return write_predictions(rows, tmp_path_factory.mktemp("cli") / "preds.jsonl")


def test_json_schema_and_values(preds):
    out = json.loads(_cli("metrics", preds, "--json").stdout)
    assert set(out) == {"results"}
    assert len(out["results"]) == 4
    first = out["results"][0]
    assert list(first)[:3] == ["model", "dataset", "n"]
    for key in ("accuracy", "ece", "mce", "rms_ce", "brier", "nll", "auroc", "aurc"):
        assert isinstance(first[key], float)
    assert not any(k.endswith("_ci") for k in first)
    # The same numbers as the library on the same arrays.
    from first_eval.predictions import group_predictions, read_predictions

    group = next(group_predictions(read_predictions(preds)))
    expect = metric_suite(group.probs, group.labels, n_bins=10, scheme="width", n_options=group.n_options)
    assert first["n"] == expect["n"] == 200
    for key, value in expect.items():
        if key != "n":
            assert first[key] == pytest.approx(value, rel=0, abs=0) or (value != value and first[key] is None)


def test_bootstrap_adds_cis_and_is_seeded(preds):
    a = json.loads(_cli("metrics", preds, "--json", "--bootstrap", 200, "--seed", 3).stdout)
    b = json.loads(_cli("metrics", preds, "--json", "--bootstrap", 200, "--seed", 3).stdout)
    assert a == b
    row = a["results"][0]
    lo, hi = row["ece_ci"]
    assert lo <= row["ece"] <= hi or lo <= hi
    assert "accuracy_ci" in row and "auroc_ci" in row


def test_equal_mass_scheme_and_bins(preds):
    width = json.loads(_cli("metrics", preds, "--json", "--bins", 5).stdout)["results"][0]
    mass = json.loads(_cli("metrics", preds, "--json", "--bins", 5, "--scheme", "mass").stdout)["results"][0]
    assert width["accuracy"] == mass["accuracy"]
    assert width["ece"] != mass["ece"]


def test_table_and_compare(preds):
    out = _cli("metrics", preds, "--compare", "teacher", "student", "--bootstrap", 100).stdout
    assert "ECE" in out and "teacher" in out and "student" in out
    assert "teacher − student on countries" in out and "p=" in out
    data = json.loads(_cli("metrics", preds, "--json", "--compare", "teacher", "student",
                           "--bootstrap", 100).stdout)
    comp = data["comparisons"]
    assert [c["dataset"] for c in comp] == ["countries", "mmlu"]
    assert set(comp[0]["differences"]["ece"]) == {"difference", "ci", "p_value"}


def _write(tmp_path, text, name="bad.jsonl"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = '{"model": "m", "dataset": "d", "id": "1", "probs": [0.6, 0.4], "label": 0}\n'


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD + "{oops\n", "bad.jsonl:2: malformed JSON"),
        (GOOD + '{"model": "m", "dataset": "d", "id": "2", "label": 0}\n', "bad.jsonl:2: missing field 'probs'"),
        (GOOD + '{"model": "m", "dataset": "d", "id": "2", "probs": [NaN, 1.0], "label": 0}\n',
         "bad.jsonl:2: probabilities must be finite"),
        (GOOD + '{"model": "m", "dataset": "d", "id": "2", "probs": [-0.5, 1.5], "label": 0}\n',
         "bad.jsonl:2: probabilities must be non-negative"),
        (GOOD + '{"model": "m", "dataset": "d", "id": "2", "probs": [0.5, 0.5], "label": 2}\n',
         "bad.jsonl:2: label 2 out of range"),
        ("", "empty"),
    ],
)
def test_bad_files_give_one_line(tmp_path, text, message):
    proc = _cli("metrics", _write(tmp_path, text), check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_file_and_unknown_model(tmp_path, preds):
    proc = _cli("metrics", tmp_path / "nope.jsonl", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = _cli("metrics", preds, "--compare", "teacher", "ghost", check=False)
    assert proc.returncode == 2 and "no model 'ghost'" in proc.stderr and "Traceback" not in proc.stderr


def test_metrics_path_never_imports_torch(preds):
    code = ("import sys\nfrom first_eval.cli import main\n"
            "try:\n    main(['metrics', sys.argv[1], '--json', '--bootstrap', '10'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code, str(preds)], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
