"""Invariants of the built-in ``countries`` / ``countries-ood`` datasets, on the real builds.

Each rule of :mod:`first_eval.data.countries` (split by country, own-split distractors, no
held-out answer in a training option) is re-checked here from the items themselves, without
the module's helpers.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from first_eval.data import countries as C
from first_eval.data.countries import (
    IN_DOMAIN_FIELDS,
    NEAR_OOD_FIELDS,
    build_countries,
    country_splits,
    leak_report,
)

SEEDS = [0, 1]
CATEGORICAL = {"subregion", "currency", "language", "calling_code"}


def _alpha3(item) -> str:
    return item.id.rsplit("/", 1)[1]


def _answer(item) -> str:
    return item.choices[item.label]


@pytest.fixture(scope="module", params=SEEDS)
def built(request):
    seed = request.param
    return seed, build_countries(seed=seed), build_countries(ood=True, seed=seed)


@pytest.fixture(scope="module")
def values():
    """(alpha-3, field) → that country's values of the field, answer first, from the raw data."""
    return {(a, f): tuple(vs) for a, _, fv in C._countries() for f, vs in fv}


# --------------------------------------------------------------------------- 1. splits


def test_split_fractions_constant():
    assert C.SPLIT_FRACTIONS == {"train": 0.40, "val": 0.15, "test": 0.45}
    assert IN_DOMAIN_FIELDS == ("capital", "subregion", "currency", "calling_code", "tld")
    assert NEAR_OOD_FIELDS == ("demonym", "language", "iso3", "capital_of")
    assert set(C.QUESTIONS) == set(IN_DOMAIN_FIELDS) | set(NEAR_OOD_FIELDS)


def test_splits_disjoint_by_country_with_stated_fractions(built):
    seed, items, ood = built
    splits = country_splits(seed)
    assert len(splits) == 251
    counts = Counter(splits.values())
    assert counts == {"train": round(0.40 * 251), "val": round(0.15 * 251), "test": 113}
    by_split: dict[str, set[str]] = {}
    for item in items:
        assert item.split == splits[_alpha3(item)], item.id
        by_split.setdefault(item.split, set()).add(_alpha3(item))
    assert set(by_split) == {"train", "val", "test"}
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]


def test_ood_only_about_held_out_countries(built):
    seed, _, ood = built
    splits = country_splits(seed)
    assert ood and {item.split for item in ood} == {"test"}
    assert {item.subject for item in ood} == set(NEAR_OOD_FIELDS)
    for item in ood:
        assert splits[_alpha3(item)] in ("val", "test"), item.id


def test_fields_ids_and_order(built):
    _, items, ood = built
    assert {item.subject for item in items} == set(IN_DOMAIN_FIELDS)
    for dataset, fields in ((items, IN_DOMAIN_FIELDS), (ood, NEAR_OOD_FIELDS)):
        ids = [item.id for item in dataset]
        assert len(set(ids)) == len(ids)
        for item in dataset:
            assert item.id == f"countries/{item.subject}/{_alpha3(item)}"
        order = [(_alpha3(item), fields.index(item.subject)) for item in dataset]
        assert order == sorted(order)


# --------------------------------------------------------------------------- 2. no leak


def _leaked(held, train_items) -> list[str]:
    """Brute force: every (held-out item, training option) pair where the answer occurs."""
    problems = []
    for item in held:
        answer = _answer(item)
        pattern = re.compile(r"(?<!\w)" + re.escape(answer) + r"(?!\w)", re.IGNORECASE)
        for train_item in train_items:
            for option in train_item.choices:
                if not pattern.search(option):
                    continue
                if (
                    item.subject in CATEGORICAL
                    and train_item.subject == item.subject
                    and option == answer
                ):
                    continue  # a class label shared by several countries
                problems.append(f"{item.id} {answer!r} in {train_item.id} option {option!r}")
    return problems


def test_no_held_out_answer_in_a_training_option(built):
    _, items, ood = built
    train = [item for item in items if item.split == "train"]
    held = [item for item in items if item.split != "train"] + ood
    assert train and held
    assert _leaked(held, train) == []


def test_leak_rule_bites_and_exception_applies():
    items, ood = build_countries(), build_countries(ood=True)
    train = [item for item in items if item.split == "train"]
    held = [item for item in items if item.split != "train"]
    train_options = {(item.subject, option) for item in train for option in item.choices}
    # "South-eastern Asia" is a training subregion option: a held-out "Eastern Asia" is inside it
    assert ("subregion", "South-eastern Asia") in train_options
    assert "Eastern Asia" not in {_answer(i) for i in held if i.subject == "subregion"}
    # a shared class label of the same field is kept ("Euro" is a training currency option)
    assert any(
        (i.subject, _answer(i)) in train_options for i in held if i.subject in CATEGORICAL
    )
    assert C._occurs("Aruban", "Aruban florin") and not C._occurs("+33", "+334")
    report = leak_report()
    assert set(report) == {"countries", "countries-ood"}
    assert set(report["countries"]) == set(IN_DOMAIN_FIELDS)
    assert set(report["countries-ood"]) == set(NEAR_OOD_FIELDS)
    assert report["countries"]["subregion"] > 0 and sum(report["countries-ood"].values()) > 0
    # dropped + kept never exceeds the held-out countries that have the field
    splits = country_splits(0)
    have = Counter(f for (a, f) in _values_keys() if splits[a] != "train")
    kept = Counter(i.subject for i in held + ood)
    for dataset in report.values():
        for field, n in dataset.items():
            assert kept[field] + n <= have[field], field


def _values_keys():
    return [(a, f) for a, _, fv in C._countries() for f, _ in fv]


# --------------------------------------------------------------------------- 3. options


def test_distractors_from_own_split(built, values):
    seed, items, ood = built
    splits = country_splits(seed)
    group = {
        "train": {a for a, s in splits.items() if s == "train"},
        "val": {a for a, s in splits.items() if s == "val"},
        "test": {a for a, s in splits.items() if s == "test"},
        "ood": {a for a, s in splits.items() if s != "train"},
    }
    names = {a: name for a, name, _ in C._countries()}
    for item in items + ood:
        alpha3, field = _alpha3(item), item.subject
        members = group["ood" if field in NEAR_OOD_FIELDS else item.split]
        pool = {v for a in members for v in values.get((a, field), ())}
        own = values[(alpha3, field)]
        assert len(item.choices) == 4 and len(set(item.choices)) == 4, item
        assert _answer(item) == own[0], item
        for option in item.choices:
            if option == own[0]:
                continue
            assert option in pool, (item.id, option)
            assert option not in own, (item.id, option)
        if field == "capital_of":
            capital = values[(alpha3, "capital")][0]
            assert item.question == f"Of which country is {capital} the capital?"
            same_capital = {
                names[a] for a in members if values.get((a, "capital"), ("",))[0] == capital
            }
            assert set(item.choices) & same_capital == {own[0]}, item
        else:
            assert item.question == C.QUESTIONS[field].format(country=names[alpha3])
    labels = Counter(item.label for item in items)
    assert min(labels.values()) > 0.18 * len(items)  # shuffled, not always "A"


def test_calling_codes_and_domains_look_right(values):
    for item in build_countries():
        answer = _answer(item)
        if item.subject == "calling_code":
            assert re.fullmatch(r"\+[0-9]+", answer), item
        elif item.subject == "tld":
            assert re.fullmatch(r"\.\w+", answer), item


# --------------------------------------------------------------------------- 4. sizes


def test_sizes():
    items, ood = build_countries(), build_countries(ood=True)
    assert sum(item.split == "test" for item in items) >= 500
    assert len(ood) >= 500


# --------------------------------------------------------------------------- 5. determinism


def test_deterministic_and_seeded():
    first = (build_countries(), build_countries(ood=True), leak_report())
    C._build.cache_clear()
    second = (build_countries(), build_countries(ood=True), leak_report())
    assert first == second
    assert country_splits(0) == country_splits(0)
    assert country_splits(1) != country_splits(0)
    ids = lambda items: {i.id for i in items if i.split == "test"}  # noqa: E731
    assert ids(build_countries(seed=1)) != ids(first[0])
    assert build_countries(seed=1) != first[0]
