"""Country-fact questions built from ``countryinfo`` 1.0.1 (MIT; one JSON file per country).

Six fields become six kinds of four-option question::

    capital    What is the capital of France?                 Paris
    region     In which region of the world is France?        Europe
    subregion  In which subregion of the world is France?     Western Europe
    currency   What is the currency of France?                Euro
    demonym    What are people from France called?            French
    language   Which language is spoken in France?            French

**In-domain vs near-OOD.** ``countries`` holds the capital, region, subregion and currency
questions, split *by country* into train/val/test (60/20/20, seeded), so no test country is
seen in training. ``countries-ood`` holds the demonym and language questions of *all*
countries, as one ``test`` split: the same countries and the same format, but facts of a kind
that fine-tuning on ``countries`` never shows — a near-out-of-domain set. A field appears in
exactly one of the two datasets.

**Options.** The three distractors are other countries' values of the same field (drawn with
a generator seeded by ``seed``, field and country), never one of this country's own values
(a country with two currencies or languages may have either as the answer's rivals removed)
and never repeated; the four options are then shuffled by the same generator, so labels are
spread over A–D. Currency and language codes are shown as English names
(:mod:`first_eval.data.iso_names`); codes without a name are skipped. Currency names often
repeat the country's adjective ("Japanese yen"), which makes that field the easiest.

**Countries.** countryinfo 1.0.1 lists 256 entries (its ``data/`` and ``data_no_iso/``
files). Entries without an ISO 3166 alpha-3 code are dropped and each alpha-3 code is kept
once (the entry with the most usable fields: Myanmar over Burma, the United Kingdom over
Wales), leaving 251 countries and territories. A country that lacks a field (Antarctica has
no capital; 15 territories have no currency, demonym or languages) simply has no question on
it. Item ids are ``countries/<field>/<ISO alpha-3>``, e.g. ``countries/capital/FRA``; the
item's ``subject`` is the field.
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any

from first_eval.data.iso_names import CURRENCY_NAMES, LANGUAGE_NAMES
from first_eval.data.items import Item

__all__ = [
    "IN_DOMAIN_FIELDS",
    "NEAR_OOD_FIELDS",
    "QUESTIONS",
    "SPLIT_FRACTIONS",
    "build_countries",
]

IN_DOMAIN_FIELDS = ("capital", "region", "subregion", "currency")
NEAR_OOD_FIELDS = ("demonym", "language")
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
N_OPTIONS = 4
QUESTIONS = {
    "capital": "What is the capital of {country}?",
    "region": "In which region of the world is {country}?",
    "subregion": "In which subregion of the world is {country}?",
    "currency": "What is the currency of {country}?",
    "demonym": "What are people from {country} called?",
    "language": "Which language is spoken in {country}?",
}
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


def _fields(info: dict[str, Any]) -> dict[str, list[str]]:
    """Field → this country's values (first = the answer); empty fields left out."""
    single = {f: _text(info.get(f)) for f in ("capital", "region", "subregion", "demonym")}
    values = {f: [v] for f, v in single.items() if v}
    values["currency"] = _coded(info.get("currencies"), CURRENCY_NAMES)
    values["language"] = _coded(info.get("languages"), LANGUAGE_NAMES)
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
        rank = (len(_fields(info)), len(info), "~" + str(info["name"]))
        if alpha3 not in best or rank > best[alpha3][0]:
            best[alpha3] = (rank, info)
    return tuple(
        (
            alpha3,
            _display_name(_text(info["name"])),
            tuple((f, tuple(v)) for f, v in _fields(info).items()),
        )
        for alpha3, (_, info) in sorted(best.items())
    )


def country_splits(seed: int = 0) -> dict[str, str]:
    """Alpha-3 code → ``"train"``/``"val"``/``"test"``, a seeded 60/20/20 split by country."""
    codes = [alpha3 for alpha3, _, _ in _countries()]
    random.Random(f"countries-split:{seed}").shuffle(codes)
    n_train = round(SPLIT_FRACTIONS["train"] * len(codes))
    n_val = round(SPLIT_FRACTIONS["val"] * len(codes))
    return {
        code: "train" if i < n_train else "val" if i < n_train + n_val else "test"
        for i, code in enumerate(codes)
    }


def build_countries(*, ood: bool = False, seed: int = 0) -> list[Item]:
    """All items of ``countries`` (``ood=False``) or ``countries-ood`` (``ood=True``).

    Parameters
    ----------
    ood : bool, default=False
        False: the capital/region/subregion/currency questions, each item's ``split`` from
        :func:`country_splits`. True: the demonym/language questions, all with split ``test``.
    seed : int, default=0
        Seeds the country split, the distractors and the option order. The built-in datasets
        use 0; a different seed is a different dataset.

    Returns
    -------
    list of Item
        Sorted by country (alpha-3), then field.
    """
    countries = _countries()
    fields = NEAR_OOD_FIELDS if ood else IN_DOMAIN_FIELDS
    pools = {
        field: sorted({v for _, _, fv in countries for f, vs in fv if f == field for v in vs})
        for field in fields
    }
    splits = country_splits(seed)
    items = []
    for alpha3, name, field_values in countries:
        values = dict(field_values)
        for field in fields:
            if field not in values:
                continue
            own = set(values[field])
            rng = random.Random(f"countries:{seed}:{field}:{alpha3}")
            distractors = rng.sample([v for v in pools[field] if v not in own], N_OPTIONS - 1)
            options = [values[field][0], *distractors]
            rng.shuffle(options)
            items.append(
                Item(
                    id=f"countries/{field}/{alpha3}",
                    question=QUESTIONS[field].format(country=name),
                    choices=tuple(options),
                    label=options.index(values[field][0]),
                    subject=field,
                    split="test" if ood else splits[alpha3],
                )
            )
    return items
