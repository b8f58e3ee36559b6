"""The predictions table: round trips, validation at the door, grouping and alignment."""

import json

import numpy as np
import pandas as pd
import pytest

from first_eval.errors import UserError
from first_eval.predictions import (
    align_groups,
    group_predictions,
    read_predictions,
    write_predictions,
)


def _rows():
    return [
        {"model": "m1", "dataset": "d", "id": "a", "probs": [0.7, 0.2, 0.1], "label": 0, "subject": "geo"},
        {"model": "m1", "dataset": "d", "id": "b", "probs": [0.5, 0.5], "label": 1, "subject": "geo"},
        {"model": "m2", "dataset": "d", "id": "a", "probs": [0.1, 0.2, 0.7], "label": 0},
        {"model": "m2", "dataset": "d", "id": "b", "probs": [0.25, 0.75], "label": 1},
    ]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip(tmp_path, suffix):
    path = write_predictions(_rows(), tmp_path / f"p{suffix}")
    frame = read_predictions(path)
    assert list(frame["id"]) == ["a", "b", "a", "b"]
    assert frame["probs"].iloc[0] == [0.7, 0.2, 0.1]
    assert list(frame["n_options"]) == [3, 2, 3, 2]
    assert frame["label"].dtype == np.int64
    assert frame["subject"].iloc[0] == "geo"


def test_groups_are_zero_padded_and_in_order(tmp_path):
    frame = read_predictions(write_predictions(_rows(), tmp_path / "p.jsonl"))
    groups = list(group_predictions(frame))
    assert [(g.model, g.dataset) for g in groups] == [("m1", "d"), ("m2", "d")]
    np.testing.assert_array_equal(groups[0].probs, [[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    np.testing.assert_array_equal(groups[0].labels, [0, 1])
    np.testing.assert_array_equal(groups[0].n_options, [3, 2])


def test_align_groups_on_shared_ids(tmp_path):
    rows = _rows() + [{"model": "m1", "dataset": "d", "id": "c", "probs": [1.0, 0.0], "label": 0}]
    g1, g2 = group_predictions(read_predictions(write_predictions(rows, tmp_path / "p.jsonl")))
    pa, pb, labels, n_opts = align_groups(g2, g1)
    np.testing.assert_array_equal(n_opts, [3, 2])
    assert pa.shape == pb.shape == (2, 3)
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_array_equal(pb[1], [0.5, 0.5, 0.0])


def test_align_groups_label_conflict(tmp_path):
    rows = _rows()
    rows[3]["label"] = 0
    g1, g2 = group_predictions(read_predictions(write_predictions(rows, tmp_path / "p.jsonl")))
    with pytest.raises(UserError, match="has label"):
        align_groups(g1, g2)


def test_renormalize_only_when_asked(tmp_path):
    rows = _rows()
    rows[0]["probs"] = [0.7, 0.2, 0.2]
    path = _write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(UserError, match=r"p.jsonl:1: probabilities sum to 1.1"):
        read_predictions(path)
    frame = read_predictions(path, renormalize=True)
    assert sum(frame["probs"].iloc[0]) == pytest.approx(1.0, abs=1e-15)


def test_sum_within_tolerance_is_accepted(tmp_path):
    rows = _rows()
    rows[0]["probs"] = [0.7 + 5e-7, 0.2, 0.1]
    read_predictions(_write_jsonl(tmp_path / "p.jsonl", rows))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.update(probs=[float("nan"), 0.5, 0.5]), r":2: probabilities must be finite"),
        (lambda r: r.update(probs=[-0.1, 0.6, 0.5]), r":2: probabilities must be non-negative"),
        (lambda r: r.update(label=3), r":2: label 3 out of range for 3 options"),
        (lambda r: r.update(label=-1), r":2: label -1 out of range"),
        (lambda r: r.pop("probs"), r":2: missing field 'probs'"),
        (lambda r: r.pop("model"), r":2: missing field 'model'"),
        (lambda r: r.update(probs="0.5,0.5"), r":2: expected 'probs' to be a list of numbers"),
        (lambda r: r.update(probs=[1.0]), r":2: expected 2 to 10 probabilities, got 1"),
        (lambda r: r.update(label="A"), r":2: expected 'label' to be an integer"),
        (lambda r: r.update(id="a", model="m1"), r":2: duplicate item \(model='m1', dataset='d', id='a'\)"),
    ],
)
def test_bad_rows_name_their_line(tmp_path, mutate, message):
    rows = [dict(r) for r in _rows()]
    rows[1] = dict(rows[1], probs=[0.3, 0.3, 0.4])
    mutate(rows[1])
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError, match=message):
        read_predictions(path)


def test_malformed_json_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_rows()[0]) + "\n\n{not json}\n")
    with pytest.raises(UserError, match=r"bad.jsonl:3: malformed JSON"):
        read_predictions(path)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match="empty"):
        read_predictions(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="unknown predictions format"):
        read_predictions(_write_jsonl(tmp_path / "p.csv", _rows()))
    with pytest.raises(UserError, match="no such file"):
        read_predictions(tmp_path / "nope.jsonl")


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        read_predictions(path)


def test_parquet_row_errors_name_the_row(tmp_path):
    frame = pd.DataFrame.from_records(_rows())
    frame.loc[2, "label"] = 7
    frame.to_parquet(tmp_path / "p.parquet")
    with pytest.raises(UserError, match=r"row 3: label 7 out of range"):
        read_predictions(tmp_path / "p.parquet")


def test_write_is_atomic_on_invalid_rows(tmp_path):
    target = tmp_path / "p.jsonl"
    target.write_text("old\n")
    rows = _rows()
    rows[0]["probs"] = [0.9, 0.9, 0.1]
    with pytest.raises(UserError):
        write_predictions(rows, target)
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]
