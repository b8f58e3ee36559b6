"""Datasets: the built-ins, JSONL layouts, HF datasets, subsets, malformed records, few-shot pools."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from first_eval.data import (
    Item,
    available_splits,
    fewshot_pool,
    list_builtin,
    load_dataset,
    subset,
)
from first_eval.data.countries import IN_DOMAIN_FIELDS, NEAR_OOD_FIELDS, build_countries
from first_eval.data.jsonl import read_jsonl
from first_eval.errors import UserError
from first_eval.prompts import select_fewshot

# --------------------------------------------------------------------------- Item


def test_item_is_frozen_and_validated():
    item = Item("q", "Why?", ["a", "b"], 1, subject="s", split="test")
    assert item.choices == ("a", "b") and item.answer_letter == "B"
    with pytest.raises(AttributeError):
        item.label = 0  # type: ignore[misc]
    bad = [(("a",), 0), (tuple("abcdefghijk"), 0), (("a", "b"), 2), (("a", "b"), -1)]
    for choices, label in bad:
        with pytest.raises(ValueError, match="Expected"):
            Item("q", "Why?", choices, label)
    with pytest.raises(ValueError, match="integer label"):
        Item("q", "Why?", ("a", "b"), True)
    with pytest.raises(ValueError, match="non-empty question"):
        Item("q", " ", ("a", "b"), 0)


def test_list_builtin():
    assert list(list_builtin()) == ["countries", "countries-ood", "mmlu"]
    assert all(isinstance(text, str) and text for text in list_builtin().values())


# --------------------------------------------------------------------------- countries


@pytest.fixture(scope="module")
def countries_all():
    return load_dataset("countries", split="all")


@pytest.fixture(scope="module")
def countries_ood():
    return load_dataset("countries-ood")


def _country(item: Item) -> str:
    return item.id.rsplit("/", 1)[1]


def test_countries_sizes_and_fields(countries_all, countries_ood):
    by = Counter((item.split, item.subject) for item in countries_all)
    assert {subject for _, subject in by} == set(IN_DOMAIN_FIELDS)
    sizes = Counter(item.split for item in countries_all)
    assert set(sizes) == {"train", "val", "test"}
    # 40% of the countries; a little more of the items, as leaking held-out items are dropped
    assert 0.38 < sizes["train"] / len(countries_all) < 0.48
    assert len(countries_all) > 1150 and sizes["test"] >= 500
    assert {item.subject for item in countries_ood} == set(NEAR_OOD_FIELDS)
    assert {item.split for item in countries_ood} == {"test"}
    assert len(countries_ood) >= 500
    assert load_dataset("countries") == [i for i in countries_all if i.split == "test"]
    assert len(load_dataset("countries", split="validation")) == sizes["val"]


def test_countries_example():
    items = {item.id: item for item in load_dataset("countries", split="all")}
    france = items["countries/capital/FRA"]
    assert france.question == "What is the capital of France?"
    assert france.choices[france.label] == "Paris"
    assert items["countries/currency/FRA"].choices[items["countries/currency/FRA"].label] == "Euro"
    assert items["countries/subregion/JPN"].choices[items["countries/subregion/JPN"].label] == "Eastern Asia"
    ood = {item.id: item for item in load_dataset("countries-ood")}
    assert ood["countries/language/FRA"].choices[ood["countries/language/FRA"].label] == "French"
    usa = items["countries/capital/USA"]
    assert usa.question == "What is the capital of the United States?"


def test_countries_are_deterministic(countries_all):
    assert build_countries() == countries_all
    assert build_countries(ood=True) == load_dataset("countries-ood")
    assert build_countries(seed=1) != countries_all


def test_countries_splits_are_disjoint_by_country(countries_all):
    by_split: dict[str, set[str]] = {}
    for item in countries_all:
        by_split.setdefault(item.split, set()).add(_country(item))
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    assert 245 <= len(set().union(*by_split.values())) <= 252


def test_countries_options(countries_all, countries_ood):
    for item in countries_all + countries_ood:
        assert len(item.choices) == 4
        assert len(set(item.choices)) == 4, item
        assert 0 <= item.label < 4
        assert all(choice.strip() for choice in item.choices)
    labels = Counter(item.label for item in countries_all)
    assert min(labels.values()) > 0.18 * len(countries_all)  # shuffled, not always "A"


def test_countries_distractors_are_never_the_country_own_values():
    from first_eval.data.countries import _countries

    own = {(alpha3, field): set(values) for alpha3, _, fv in _countries() for field, values in fv}
    for item in build_countries() + build_countries(ood=True):
        field, alpha3 = item.id.split("/")[1:]
        distractors = set(item.choices) - {item.choices[item.label]}
        assert not distractors & own[(alpha3, field)], item


def test_countries_ids_unique_and_no_field_leak(countries_all, countries_ood):
    ids = [item.id for item in countries_all]
    ood_ids = [item.id for item in countries_ood]
    assert len(set(ids)) == len(ids) and len(set(ood_ids)) == len(ood_ids)
    assert not set(ids) & set(ood_ids)
    assert not {i.subject for i in countries_all} & {i.subject for i in countries_ood}
    assert set(IN_DOMAIN_FIELDS).isdisjoint(NEAR_OOD_FIELDS)


def test_countries_ood_has_only_test():
    with pytest.raises(UserError, match="no split 'train'.*test"):
        load_dataset("countries-ood", split="train")
    with pytest.raises(UserError, match="no split 'dev2'"):
        load_dataset("countries", split="dev2")


# --------------------------------------------------------------------------- mmlu


@pytest.fixture(scope="module")
def mmlu():
    return load_dataset("mmlu")


def test_mmlu_rows_and_subjects(mmlu):
    assert len(mmlu) == 14_042
    subjects = Counter(item.subject for item in mmlu)
    assert len(subjects) == 57
    assert subjects["high school psychology"] == 545
    assert all(len(item.choices) == 4 and item.split == "test" for item in mmlu)
    assert not [item for item in mmlu if item.question == "question"]  # junk rows dropped
    assert len({item.id for item in mmlu}) == len(mmlu)
    assert load_dataset("mmlu", split="all") == mmlu


def test_mmlu_stratified_subset(mmlu):
    picked = load_dataset("mmlu", limit=300)
    assert len(picked) == 300
    assert picked == load_dataset("mmlu", limit=300)
    assert picked != load_dataset("mmlu", limit=300, seed=1)
    counts = Counter(item.subject for item in picked)
    sizes = Counter(item.subject for item in mmlu)
    assert len(counts) == 57
    for subject, size in sizes.items():
        assert abs(counts[subject] - 300 * size / len(mmlu)) < 1
    order = {item.id: i for i, item in enumerate(mmlu)}
    assert [order[item.id] for item in picked] == sorted(order[item.id] for item in picked)


def test_unstratified_subset(mmlu):
    picked = load_dataset("mmlu", limit=50, stratify=False)
    assert len(picked) == 50 and picked == load_dataset("mmlu", limit=50, stratify=False)
    assert len({item.subject for item in picked}) > 10


def test_subset_edges():
    items = [Item(f"q{i}", "Q?", ("a", "b"), 0, subject="xy"[i % 2]) for i in range(5)]
    assert subset(items, None) == items
    assert subset(items, 99) == items
    assert subset(items, 0) == []
    assert Counter(i.subject for i in subset(items, 3)) == {"x": 2, "y": 1}
    with pytest.raises(UserError, match="non-negative"):
        subset(items, -1)


# --------------------------------------------------------------------------- JSONL

QUESTIONS = [
    {"id": "q1", "question": "2 + 2 = ?", "choices": ["3", "4", "5"], "answer": 1},
    {"id": "q2", "question": "Capital of Peru?", "choices": ["Lima", "Quito"], "answer": 0,
     "subject": "geo"},
    {"id": "q3", "question": "Pick D", "choices": ["a", "b", "c", "d"], "answer": 3,
     "split": "test"},
]  # fmt: skip


def _write(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def _as_labeled(record: dict, *, nested: bool = False, numeric: bool = False) -> dict:
    labels = [str(i + 1) if numeric else "ABCDEFGHIJ"[i] for i in range(len(record["choices"]))]
    out = {k: v for k, v in record.items() if k not in ("question", "choices", "answer")}
    if nested:
        out["question"] = {
            "stem": record["question"],
            "choices": [{"label": l, "text": t} for l, t in zip(labels, record["choices"])],
        }
    else:
        out["question"] = record["question"]
        out["choices"] = {"label": labels, "text": record["choices"]}
    out["answerKey"] = labels[record["answer"]]
    return out


def test_jsonl_layouts_give_identical_items(tmp_path):
    generic = load_dataset(str(_write(tmp_path / "generic.jsonl", QUESTIONS)))
    assert [item.id for item in generic] == ["q1", "q2", "q3"]
    assert generic[1] == Item("q2", "Capital of Peru?", ("Lima", "Quito"), 0, "geo", "")
    letters = [{**q, "answer": "ABCD"[q["answer"]]} for q in QUESTIONS]
    variants = {
        "letters": letters,
        "hf": [_as_labeled(q) for q in QUESTIONS],
        "original": [_as_labeled(q, nested=True) for q in QUESTIONS],
        "arc-numeric": [_as_labeled(q, numeric=True) for q in QUESTIONS],
        "openbookqa": [
            {**{k: v for k, v in _as_labeled(q).items() if k != "question"},
             "question_stem": q["question"]}
            for q in QUESTIONS
        ],
    }  # fmt: skip
    for name, records in variants.items():
        assert load_dataset(str(_write(tmp_path / f"{name}.jsonl", records))) == generic, name


def test_jsonl_default_ids_are_identical_across_layouts(tmp_path):
    bare = [{k: v for k, v in q.items() if k != "id"} for q in QUESTIONS]
    a = load_dataset(str(_write(tmp_path / "a" / "quiz.jsonl", bare)))
    b = load_dataset(str(_write(tmp_path / "b" / "quiz.jsonl", [_as_labeled(q) for q in bare])))
    assert a == b
    assert [item.id for item in a] == ["quiz/1", "quiz/2", "quiz/3"]


def test_jsonl_split_semantics(tmp_path):
    path = str(_write(tmp_path / "mixed.jsonl", QUESTIONS))
    assert [item.id for item in load_dataset(path, split="test")] == ["q3"]
    with pytest.raises(UserError, match="no items of split 'train'"):
        load_dataset(path, split="train")
    plain = str(_write(tmp_path / "plain.jsonl", QUESTIONS[:2]))
    assert {item.split for item in load_dataset(plain, split="val")} == {"val"}
    assert {item.split for item in load_dataset(plain)} == {""}


BAD_RECORDS = [
    ("{not json", "bad JSON"),
    ({"id": "x", "question": "Q?", "answer": 0}, "no 'choices'"),
    ({"id": "x", "question": "Q?", "choices": [], "answer": 0}, "at least 2 choices, has 0"),
    ({"id": "x", "question": "Q?", "choices": ["a"], "answer": 0}, "at least 2 choices, has 1"),
    ({"id": "x", "question": "Q?", "choices": list("abcdefghijk"), "answer": 0}, "11 choices"),
    ({"id": "x", "question": "Q?", "choices": ["a", "b"], "answer": 2}, "out of range"),
    ({"id": "x", "question": "Q?", "choices": ["a", "b"], "answer": -1}, "out of range"),
    ({"id": "x", "question": "Q?", "choices": ["a", "b"], "answer": "C"}, "out of range"),
    ({"id": "x", "question": "Q?", "choices": ["a", "b"], "answer": "Z"}, "unknown answer letter"),
    ({"id": "x", "question": "Q?", "choices": ["a", "b"], "answer": "AB"}, "index or a letter"),
    ({"id": "x", "question": "", "choices": ["a", "b"], "answer": 0}, "no question"),
    ({"id": "x", "question": "Q?", "choices": "ab", "answer": 0}, "must be a list"),
    ({"id": "q1", "question": "Q?", "choices": ["a", "b"], "answer": 0}, "duplicate id 'q1'"),
    ({"id": "x", "question": "Q?", "choices": ["a", "b"]}, "index or a letter"),
    ([1, 2], "expected a JSON object"),
]


@pytest.mark.parametrize(("record", "reason"), BAD_RECORDS)
def test_malformed_generic_record_names_file_and_line(tmp_path, record, reason):
    path = _write(tmp_path / "bad.jsonl", [QUESTIONS[0], "", record, QUESTIONS[1]])
    with pytest.raises(UserError, match="invalid item") as info:
        load_dataset(str(path))
    assert str(info.value).startswith(f"{path}:3: invalid item")
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"id": "x", "question": "Q?", "choices": {"label": ["A"], "text": ["a"]},
          "answerKey": "A"}, "at least 2 choices"),
        ({"id": "x", "question": "Q?", "choices": {"label": ["A", "B"], "text": ["a", "b"]},
          "answerKey": "E"}, "answerKey 'E' is not one of the choice labels"),
        ({"id": "x", "question": "Q?", "choices": {"label": ["A", "B"], "text": ["a", "b"]},
          "answerKey": ""}, "answerKey ''"),
        ({"id": "x", "question": "Q?", "choices": {"label": ["A", "B"], "text": ["a"]},
          "answerKey": "A"}, "2 choice labels but 1 texts"),
        ({"id": "x", "question": {"stem": "Q?"}, "answerKey": "A"}, "no 'choices'"),
        ({"id": "x", "question": "Q?", "choices": ["a", "b"], "answer": 0},
         r"not in the CommonsenseQA/ARC/OpenBookQA layout that the first record \(.*arc.jsonl:1\)"),
    ],
)  # fmt: skip
def test_malformed_labeled_record_names_file_and_line(tmp_path, record, reason):
    good = _as_labeled(QUESTIONS[0])
    path = _write(tmp_path / "arc.jsonl", [good, record])
    with pytest.raises(UserError, match=reason) as info:
        load_dataset(str(path))
    assert str(info.value).startswith(f"{path}:2: invalid item")


def test_unknown_layout(tmp_path):
    path = _write(tmp_path / "odd.jsonl", [{"question": "Q?", "options": ["a", "b"]}])
    with pytest.raises(UserError, match=r"odd.jsonl:1: invalid item: cannot tell the layout"):
        load_dataset(str(path))


def test_skip_invalid_counts(tmp_path, caplog):
    records = [QUESTIONS[0], "{bad", QUESTIONS[1], {"question": "Q?", "choices": ["a"],
               "answer": 0}, QUESTIONS[2], QUESTIONS[0]]  # fmt: skip
    path = _write(tmp_path / "some-bad.jsonl", records)
    items, skipped = read_jsonl(path, skip_invalid=True)
    assert [item.id for item in items] == ["q1", "q2", "q3"]
    assert len(skipped) == 3
    assert [s.split(": ")[0] for s in skipped] == [f"{path}:{n}" for n in (2, 4, 6)]
    with caplog.at_level(logging.WARNING, logger="first_eval.data"):
        assert load_dataset(str(path), skip_invalid=True) == items
    assert "skipped 3 invalid item(s)" in caplog.text
    everything_bad = _write(tmp_path / "all-bad.jsonl", ["{bad", "[]"])
    with pytest.raises(UserError, match=r"no valid items \(2 skipped\)"):
        load_dataset(str(everything_bad), skip_invalid=True)


# --------------------------------------------------------------------------- names, HF


def test_unknown_names_and_missing_files(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'countrie'"):
        load_dataset("countrie")
    with pytest.raises(UserError, match="no such dataset file"):
        load_dataset(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="empty dataset name"):
        load_dataset("  ")


def test_offline_hub_dataset_gives_one_clear_error():
    with pytest.raises(UserError) as info:
        load_dataset("allenai/ai2_arc:ARC-Easy", split="test")
    message = str(info.value)
    assert "offline" in message and "JSONL" in message and "save_to_disk" in message


def test_hf_saved_dataset_directory(tmp_path):
    import datasets

    rows = [_as_labeled(q) for q in QUESTIONS]
    for row in rows:
        row.pop("split", None)
        row.setdefault("subject", "")
    table = {key: [row[key] for row in rows] for key in rows[0]}
    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(table), "test": datasets.Dataset.from_dict(table)}
    )
    dd.save_to_disk(tmp_path / "arc")
    test = load_dataset(str(tmp_path / "arc"), split="test")
    generic = load_dataset(str(_write(tmp_path / "g.jsonl", QUESTIONS)))
    assert [(i.id, i.question, i.choices, i.label) for i in test] == [
        (i.id, i.question, i.choices, i.label) for i in generic
    ]
    assert {item.split for item in test} == {"test"}
    assert len(load_dataset(str(tmp_path / "arc"))) == 6
    with pytest.raises(UserError, match="no split 'val'"):
        load_dataset(str(tmp_path / "arc"), split="val")
    mmlu_like = datasets.Dataset.from_dict(
        {"question": ["Q?"], "subject": ["math"], "choices": [["1", "2"]], "answer": [1]}
    )
    mmlu_like.save_to_disk(tmp_path / "mmlu-like")
    (item,) = load_dataset(str(tmp_path / "mmlu-like"))
    assert item == Item("mmlu-like/1", "Q?", ("1", "2"), 1, "math", "")


def test_hf_data_file_directory(tmp_path):
    _write(tmp_path / "files" / "test.jsonl", [{k: v for k, v in q.items() if k != "split"}
                                               for q in QUESTIONS])  # fmt: skip
    items = load_dataset(str(tmp_path / "files"), split="test")
    assert [item.id for item in items] == ["q1", "q2", "q3"]


# --------------------------------------------------------------------------- few-shot pools


def _split_file(path: Path, splits: dict[str, int]) -> str:
    """A JSONL file with ``n`` generic items per split, ids ``<split>-<i>``."""
    records = [
        {"id": f"{split}-{i}", "question": f"{split} question {i}?", "choices": ["a", "b"],
         "answer": i % 2, "split": split}
        for split, n in splits.items() for i in range(n)
    ]  # fmt: skip
    return str(_write(path, records))


def _one_line_error(call) -> str:
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_fewshot_pool_comes_from_train_never_the_scored_items(tmp_path):
    path = _split_file(tmp_path / "tt.jsonl", {"test": 4, "train": 3})
    assert available_splits(path) == ("test", "train")
    scored = load_dataset(path, split="test")
    pool = fewshot_pool(path, scored_split="test", scored_ids=[i.id for i in scored])
    assert [item.id for item in pool] == ["train-0", "train-1", "train-2"]
    shots = select_fewshot(pool, 2, exclude_ids=[i.id for i in scored])
    assert [item.id for item in shots] == ["train-0", "train-1"]
    assert pool == fewshot_pool(path, scored_split="test", scored_ids=[i.id for i in scored])
    # scored with split=None, every split is scored: the pool is what is left of train
    some = load_dataset(path, limit=4, stratify=False, seed=3)
    left = fewshot_pool(path, scored_split=None, scored_ids=[i.id for i in some])
    assert left and {i.split for i in left} == {"train"}
    assert not {i.id for i in left} & {i.id for i in some}
    everything = [i.id for i in load_dataset(path)]
    message = _one_line_error(lambda: fewshot_pool(path, scored_split=None, scored_ids=everything))
    assert "no few-shot examples left in split 'train'" in message
    assert "every split is being scored" in message


def test_fewshot_pool_falls_back_to_val(tmp_path):
    path = _split_file(tmp_path / "vt.jsonl", {"val": 2, "test": 3})
    pool = fewshot_pool(path, scored_split="test", scored_ids=["test-0"])
    assert [item.id for item in pool] == ["val-0", "val-1"]
    dev = _split_file(tmp_path / "dt.jsonl", {"dev": 2, "test": 3})
    assert {i.split for i in fewshot_pool(dev, scored_split="test")} == {"dev"}


def test_fewshot_pool_needs_another_split_in_a_file(tmp_path):
    plain = str(_write(tmp_path / "plain.jsonl", [{k: v for k, v in q.items() if k != "split"}
                                                  for q in QUESTIONS]))  # fmt: skip
    assert available_splits(plain) == ()
    for scored in ("test", None):  # load_dataset(plain, split="train") would relabel it all
        message = _one_line_error(lambda: fewshot_pool(plain, scored_split=scored))
        assert message.startswith(f"few-shot examples for {plain!r} need a split")
        assert "carry no 'split' field" in message and "0 shots" in message
    message = _one_line_error(lambda: fewshot_pool(plain, scored_split="test", split="train"))
    assert "has no split 'train' for few-shot examples" in message
    odd = _split_file(tmp_path / "odd.jsonl", {"test": 2, "extra": 2})
    message = _one_line_error(lambda: fewshot_pool(odd, scored_split="test"))
    assert "it has: extra, test" in message and "name one as the few-shot split" in message
    assert {i.split for i in fewshot_pool(odd, scored_split="test", split="extra")} == {"extra"}


@pytest.mark.parametrize("name", ["mmlu", "countries-ood", "MMLU"])
def test_fewshot_pool_of_a_test_only_builtin_is_a_clear_error(name):
    for scored in (None, "test"):
        message = _one_line_error(lambda: fewshot_pool(name, scored_split=scored))
        assert message.startswith(
            f"few-shot examples for {name.lower()!r} need a split other than the scored one "
            "('test'); it has only: test. Use 0 shots"
        )


def test_fewshot_pool_of_countries():
    test_ids = [i.id for i in load_dataset("countries", split="test")]
    pool = fewshot_pool("countries", scored_split=None, scored_ids=test_ids)
    assert pool == load_dataset("countries", split="train")
    assert {i.split for i in fewshot_pool("countries", scored_split="train")} == {"val"}
    assert {i.split for i in fewshot_pool("countries", scored_split="test", split="dev")} == {"val"}
    assert available_splits("countries") == ("train", "val", "test")


def test_fewshot_split_must_differ_from_the_scored_one_and_exist(tmp_path):
    path = _split_file(tmp_path / "tt.jsonl", {"test": 2, "train": 2})
    message = _one_line_error(lambda: fewshot_pool(path, scored_split="test", split="test"))
    assert message == (f"few-shot split 'test' of {path!r} is the split being scored; few-shot "
                       "examples must come from another split (it has: test, train)")  # fmt: skip
    message = _one_line_error(lambda: fewshot_pool("countries", scored_split="val", split="validation"))
    assert "is the split being scored" in message
    message = _one_line_error(lambda: fewshot_pool(path, scored_split="test", split="val"))
    assert message == f"{path!r} has no split 'val' for few-shot examples; it has: test, train"


def test_fewshot_pool_of_hf_datasets(tmp_path):
    import datasets

    def table(split: str, n: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"id": [f"{split}-{i}" for i in range(n)],
                                           "question": [f"Q{i}?" for i in range(n)],
                                           "choices": [["a", "b"]] * n, "answer": [0] * n})  # fmt: skip

    datasets.DatasetDict({"validation": table("validation", 2), "test": table("test", 3)}).save_to_disk(
        tmp_path / "dd"
    )
    assert available_splits(str(tmp_path / "dd")) == ("validation", "test")
    pool = fewshot_pool(str(tmp_path / "dd"), scored_split="test", scored_ids=["test-0"])
    assert [i.id for i in pool] == ["validation-0", "validation-1"]
    table("x", 3).save_to_disk(tmp_path / "single")
    assert available_splits(str(tmp_path / "single")) == ()
    message = _one_line_error(lambda: fewshot_pool(str(tmp_path / "single"), scored_split=None))
    assert "need a split of their own" in message
    message = _one_line_error(lambda: fewshot_pool("allenai/ai2_arc:ARC-Easy", scored_split="test"))
    assert "offline" in message
