"""Country-fact questions built from ``countryinfo`` 1.0.1 (MIT; one JSON file per country).

Nine fields become nine kinds of four-option question::

    capital       What is the capital of France?                          Paris
    subregion     In which subregion of the world is France?              Western Europe
    currency      What is the currency of France?                         Euro
    calling_code  What is the international calling code of France?      +33
    tld           What is the internet top-level domain of France?        .fr
    demonym       What are people from France called?                     French
    language      Which language is spoken in France?                     French
    iso3          What is the three-letter ISO 3166 code of France?       FRA
    capital_of    Of which country is Paris the capital?                  France

**Split by country.** Countries are shuffled with ``random.Random(f"countries-split:{seed}")``
and cut into train/val/test (40/15/45, :data:`SPLIT_FRACTIONS`; counts rounded), so no val or
test country is seen in training.

**In-domain vs near-OOD.** ``countries`` holds the capital, subregion, currency,
calling-code and top-level-domain questions (:data:`IN_DOMAIN_FIELDS`), each item in its
country's split. ``countries-ood`` holds the demonym, language, ISO-code and capital→country
questions (:data:`NEAR_OOD_FIELDS`) of the *val and test countries only*, as one ``test``
split: the same format and no training country, but facts of a kind that fine-tuning on
``countries`` never shows — a near-out-of-domain set. A field appears in exactly one of the two
datasets.

**Options.** The three distractors are values of the same field drawn only from countries of
the item's own split (train items from train countries, val from val, test from test; a
``countries-ood`` item from the val and test countries), so no held-out answer is shown as a
wrong option in training. They are never one of this country's own values (a country with two
currencies, languages, calling codes or domains has neither as a rival; for ``capital_of``,
no country with the same capital — Kingston is Jamaica's and Norfolk Island's) and never
repeated; an item whose pool has fewer than three usable distractors is skipped. The draw and
then the shuffle of the four options use ``random.Random(f"countries:{seed}:{field}:{alpha3}")``,
so labels are spread over A–D. Currency and language codes are shown as English names
(:mod:`first_eval.data.iso_names`); codes without a name are skipped. Calling codes are
``"+"`` and the first code's digits (a code that is empty or not all digits, such as Jamaica's
``1-876``, means no question); domains are the first listed (``.fr``).

**No held-out answer in training.** The held-out items are every val and test item of
``countries`` and every ``countries-ood`` item; the *training options* are all option strings
(answers and distractors) of the ``countries`` train items. A held-out item is dropped when
its answer occurs in a training option, case-insensitively as a whole word or phrase (the
answer, regex-escaped, between ``(?<!\\w)`` and ``(?!\\w)``: "Aruban" occurs in "Aruban
florin", "+33" does not occur in "+334"). One exception: ``subregion``,
``currency``, ``language`` and ``calling_code`` are *categorical* (:data:`CATEGORICAL_FIELDS`;
their values are class labels that several countries share: "Western Europe", "Euro", "English",
"+1"), and for them an occurrence that *is* a training option of the same field, string for
string, is allowed — a shared label, not a fact about the held-out country. Any other
occurrence (inside another field's option, or inside a longer option) still drops the item, so
a held-out ``region`` "Europe" is dropped because "Western Europe" is a training ``subregion``
option. (That rule is why there is no ``region`` field: it dropped 91 of its 150 held-out
items, every Europe, Asia and Africa, since each sits inside a training subregion, and left a
held-out region set of only Americas and Oceania.) The identifying fields (``capital``, ``tld``, ``demonym``, ``iso3``, ``capital_of``)
have no exception. Training items are never filtered, so the rule is deterministic;
:func:`leak_report` gives how many items it drops per dataset and field.

**Countries.** countryinfo 1.0.1 lists 256 entries (its ``data/`` and ``data_no_iso/``
files). Entries without an ISO 3166 alpha-3 code are dropped and each alpha-3 code is kept
once (the entry with the most usable capital/region/subregion/demonym/currency/language
fields: Myanmar over Burma, the United Kingdom over Wales), leaving 251 countries and
territories. A country that lacks a field (Antarctica has no capital; 15 territories have no
currency, demonym or languages) simply has no question on it. Item ids are
``countries/<field>/<ISO alpha-3>``, e.g. ``countries/capital/FRA``; the item's ``subject`` is
the field; items are sorted by alpha-3, then field.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterator
from typing import Any

from first_eval.data.iso_names import CURRENCY_NAMES, LANGUAGE_NAMES
from first_eval.data.items import Item

__all__ = [
    "CATEGORICAL_FIELDS",
    "IN_DOMAIN_FIELDS",
    "NEAR_OOD_FIELDS",
    "QUESTIONS",
    "SPLIT_FRACTIONS",
    "build_countries",
    "country_splits",
    "leak_report",
]

IN_DOMAIN_FIELDS = ("capital", "subregion", "currency", "calling_code", "tld")
NEAR_OOD_FIELDS = ("demonym", "language", "iso3", "capital_of")
CATEGORICAL_FIELDS = frozenset({"subregion", "currency", "language", "calling_code"})
SPLIT_FRACTIONS = {"train": 0.40, "val": 0.15, "test": 0.45}
N_OPTIONS = 4
QUESTIONS = {
    "capital": "What is the capital of {country}?",
    "subregion": "In which subregion of the world is {country}?",
    "currency": "What is the currency of {country}?",
    "calling_code": "What is the international calling code of {country}?",
    "tld": "What is the internet top-level domain of {country}?",
    "demonym": "What are people from {country} called?",
    "language": "Which language is spoken in {country}?",
    "iso3": "What is the three-letter ISO 3166 code of {country}?",
    "capital_of": "Of which country is {capital} the capital?",
}
# The fields an entry's rank counts when one alpha-3 code has several entries: fixed, so that
# adding question fields never changes which 251 entries are kept.
_RANK_FIELDS = ("capital", "region", "subregion", "demonym", "currency", "language")
_PLURAL_OR_TITLED = re.compile(r"^(United |Republic )|(Islands|Republic|Emirates)$")
_THE_NAMES = {"Bahamas", "Gambia", "Netherlands", "Philippines", "Maldives", "Comoros"}


def _text(value: Any) -> str:
    """A clean single value: a non-empty string, or the first string of a list."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), "")
    if not isinstance(value, str):
        return ""
    return re.sub(r"\s+", " ", re.sub(r",(?=\S)", ", ", value)).strip()


def _coded(values: Any, names: dict[str, str]) -> list[str]:
    if not isinstance(values, list):
        return []
    out = [names[v] for v in values if isinstance(v, str) and v in names]
    return list(dict.fromkeys(out))


def _calling_codes(values: Any) -> list[str]:
    """``"+33"`` per code; [] unless the first code is all digits (it is the answer)."""
    if not isinstance(values, list) or not values:
        return []
    codes = [str(v).strip() for v in values]
    if not re.fullmatch(r"[0-9]+", codes[0]):
        return []
    return list(dict.fromkeys("+" + c for c in codes if re.fullmatch(r"[0-9]+", c)))


def _domains(values: Any) -> list[str]:
    """The listed top-level domains, first = the answer; [] if the first is not ``.xx``."""
    if not isinstance(values, list) or not values:
        return []
    domains = [_text(v) for v in values]
    if not re.fullmatch(r"\.\w+", domains[0]):
        return []
    return list(dict.fromkeys(d for d in domains if d))


def _fields(info: dict[str, Any]) -> dict[str, list[str]]:
    """Field → this country's values (first = the answer); empty fields left out.

    Only the fields read from one record; ``iso3`` and ``capital_of`` are added by
    :func:`_countries`.
    """
    single = {f: _text(info.get(f)) for f in ("capital", "region", "subregion", "demonym")}
    values = {f: [v] for f, v in single.items() if v}
    values["currency"] = _coded(info.get("currencies"), CURRENCY_NAMES)
    values["language"] = _coded(info.get("languages"), LANGUAGE_NAMES)
    values["calling_code"] = _calling_codes(info.get("callingCodes"))
    values["tld"] = _domains(info.get("tld"))
    return {f: v for f, v in values.items() if v}


def _display_name(name: str) -> str:
    name = name.strip()
    if name in _THE_NAMES or _PLURAL_OR_TITLED.search(name):
        return "the " + name
    return name


@functools.cache
def _countries() -> tuple[tuple[str, str, tuple[tuple[str, tuple[str, ...]], ...]], ...]:
    """(alpha-3, display name, ((field, values), ...)) per country, sorted by alpha-3."""
    import countryinfo

    best: dict[str, tuple[tuple[int, int, str], dict[str, Any]]] = {}
    for country in countryinfo.all_countries():
        info = country.info()
        alpha3 = str((info.get("ISO") or {}).get("alpha3") or "").strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", alpha3) or not _text(info.get("name")):
            continue
        # Most usable fields, then the fuller record, then the name: deterministic.
        fields = _fields(info)
        rank = (sum(f in fields for f in _RANK_FIELDS), len(info), "~" + str(info["name"]))
        if alpha3 not in best or rank > best[alpha3][0]:
            best[alpha3] = (rank, info)
    out = []
    for alpha3, (_, info) in sorted(best.items()):
        name = _display_name(_text(info["name"]))
        fields = _fields(info)
        fields["iso3"] = [alpha3]
        if "capital" in fields:
            fields["capital_of"] = [name]
        out.append((alpha3, name, tuple((f, tuple(v)) for f, v in fields.items())))
    return tuple(out)


def country_splits(seed: int = 0) -> dict[str, str]:
    """Alpha-3 code → ``"train"``/``"val"``/``"test"``, a seeded 40/15/45 split by country."""
    codes = [alpha3 for alpha3, _, _ in _countries()]
    random.Random(f"countries-split:{seed}").shuffle(codes)
    n_train = round(SPLIT_FRACTIONS["train"] * len(codes))
    n_val = round(SPLIT_FRACTIONS["val"] * len(codes))
    return {
        code: "train" if i < n_train else "val" if i < n_train + n_val else "test"
        for i, code in enumerate(codes)
    }


def _candidates(
    seed: int, split: str, group: tuple[str, ...], fields: tuple[str, ...]
) -> Iterator[Item]:
    """Items of ``fields`` for the countries in ``group`` (one split's, or val+test for OOD).

    Distractor pools hold only ``group``'s values; the items are not yet leak-filtered.
    """
    countries = [c for c in _countries() if c[0] in group]
    pools = {
        field: sorted({v for _, _, fv in countries for f, vs in fv if f == field for v in vs})
        for field in fields
    }
    capitals = {alpha3: dict(fv).get("capital", ("",))[0] for alpha3, _, fv in countries}
    names = {alpha3: name for alpha3, name, _ in countries}
    for alpha3, name, field_values in countries:
        values = dict(field_values)
        for field in fields:
            if field not in values:
                continue
            own = set(values[field])
            if field == "capital_of":  # every country with this capital answers the question
                own |= {names[a] for a, c in capitals.items() if c == values["capital"][0]}
            usable = [v for v in pools[field] if v not in own]
            if len(usable) < N_OPTIONS - 1:
                continue
            rng = random.Random(f"countries:{seed}:{field}:{alpha3}")
            answer = values[field][0]
            options = [answer, *rng.sample(usable, N_OPTIONS - 1)]
            rng.shuffle(options)
            if field == "capital_of":
                question = QUESTIONS[field].format(capital=values["capital"][0])
            else:
                question = QUESTIONS[field].format(country=name)
            yield Item(
                id=f"countries/{field}/{alpha3}",
                question=question,
                choices=tuple(options),
                label=options.index(answer),
                subject=field,
                split=split,
            )


def _occurs(answer: str, text: str) -> bool:
    """``answer`` in ``text`` as a whole word or phrase, ignoring case."""
    if answer.lower() not in text.lower():
        return False
    return re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", text, re.IGNORECASE) is not None


def _leaks(item: Item, train_options: dict[str, frozenset[str]]) -> bool:
    """Whether ``item``'s answer occurs in a training option (see the module docstring)."""
    answer = item.choices[item.label]
    for option, fields in train_options.items():
        if not _occurs(answer, option):
            continue
        if option == answer and item.subject in CATEGORICAL_FIELDS and fields == {item.subject}:
            continue  # a shared class label of the same field
        return True
    return False


_Built = tuple[tuple[Item, ...], tuple[Item, ...], tuple[tuple[str, str, int], ...]]


@functools.cache
def _build(seed: int) -> _Built:
    """(``countries`` items, ``countries-ood`` items, (dataset, field, n dropped) per field)."""
    splits = country_splits(seed)
    members = {s: tuple(a for a, split in splits.items() if split == s) for s in SPLIT_FRACTIONS}
    train = list(_candidates(seed, "train", members["train"], IN_DOMAIN_FIELDS))
    held_in = [
        item
        for split in ("val", "test")
        for item in _candidates(seed, split, members[split], IN_DOMAIN_FIELDS)
    ]
    held_ood = list(_candidates(seed, "test", members["val"] + members["test"], NEAR_OOD_FIELDS))
    option_fields: dict[str, set[str]] = {}
    for item in train:
        for option in item.choices:
            option_fields.setdefault(option, set()).add(item.subject)
    train_options = {o: frozenset(f) for o, f in sorted(option_fields.items())}
    dropped = []
    kept: dict[str, list[Item]] = {"countries": list(train), "countries-ood": []}
    for dataset, items, fields in (
        ("countries", held_in, IN_DOMAIN_FIELDS),
        ("countries-ood", held_ood, NEAR_OOD_FIELDS),
    ):
        leaked = [_leaks(item, train_options) for item in items]
        kept[dataset] += [item for item, leak in zip(items, leaked) if not leak]
        for field in fields:
            n = sum(leak for item, leak in zip(items, leaked) if item.subject == field)
            dropped.append((dataset, field, n))
    field_order = {f: i for i, f in enumerate(IN_DOMAIN_FIELDS + NEAR_OOD_FIELDS)}
    key = lambda item: (item.id.rsplit("/", 1)[1], field_order[item.subject])  # noqa: E731
    return (
        tuple(sorted(kept["countries"], key=key)),
        tuple(sorted(kept["countries-ood"], key=key)),
        tuple(dropped),
    )


def leak_report(seed: int = 0) -> dict[str, dict[str, int]]:
    """How many held-out items the no-leak rule drops: dataset → field → count.

    Parameters
    ----------
    seed : int, default=0
        As in :func:`build_countries`.

    Returns
    -------
    dict
        ``{"countries": {field: n, ...}, "countries-ood": {field: n, ...}}``, every field of
        the dataset present (0 when none was dropped). ``countries`` counts its val and test
        items; training items are never dropped.
    """
    report: dict[str, dict[str, int]] = {"countries": {}, "countries-ood": {}}
    for dataset, field, n in _build(seed)[2]:
        report[dataset][field] = n
    return report


def build_countries(*, ood: bool = False, seed: int = 0) -> list[Item]:
    """All items of ``countries`` (``ood=False``) or ``countries-ood`` (``ood=True``).

    Parameters
    ----------
    ood : bool, default=False
        False: the :data:`IN_DOMAIN_FIELDS` questions, each item's ``split`` from
        :func:`country_splits`. True: the :data:`NEAR_OOD_FIELDS` questions of the val and
        test countries, all with split ``test``.
    seed : int, default=0
        Seeds the country split, the distractors and the option order. The built-in datasets
        use 0; a different seed is a different dataset.

    Returns
    -------
    list of Item
        Sorted by country (alpha-3), then field; held-out items whose answer occurs in a
        training option are left out (see the module docstring).
    """
    return list(_build(seed)[1 if ood else 0])
