"""Hugging Face ``datasets``: hub ids, ``save_to_disk`` directories, data-file directories.

Rows are mapped like JSONL records (:mod:`first_eval.data.jsonl`): the generic layout
(``question``, ``choices`` list, ``answer`` index or letter — e.g. ``cais/mmlu``) or the
CommonsenseQA/ARC/OpenBookQA layout (``choices: {label, text}``, ``answerKey``), detected from
the first row. A hub id may name a configuration after a colon: ``allenai/ai2_arc:ARC-Easy``.
Hub ids work where the hub is reachable; offline, one :class:`UserError` says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from first_eval.data.items import Item
from first_eval.data.jsonl import read_records
from first_eval.errors import UserError

__all__ = ["hf_splits", "is_saved_dataset", "read_hf"]

_SAVED_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")


def is_saved_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether a directory was written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk``."""
    return any((Path(path) / marker).is_file() for marker in _SAVED_MARKERS)


def _offline() -> bool:
    import datasets

    return bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))


def _open(name_or_dir: str, split: str | None) -> Any:
    import datasets

    if os.path.isdir(name_or_dir):
        try:
            if is_saved_dataset(name_or_dir):
                return datasets.load_from_disk(name_or_dir)
            return datasets.load_dataset(name_or_dir)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read dataset directory {name_or_dir}: {exc}") from exc
    name, _, config = name_or_dir.partition(":")
    try:
        return datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # many types: ConnectionError, DatasetNotFoundError, ...
        raise _hub_error(name_or_dir, exc) from exc


def _hub_error(name_or_dir: str, exc: Exception) -> UserError:
    why = (
        "the Hugging Face hub is unreachable (offline mode)"
        if _offline()
        else f"the hub did not provide it ({type(exc).__name__}: {exc})"
    )
    return UserError(
        f"cannot load dataset {name_or_dir!r}: it is not a built-in, a local file or a "
        f"directory, and {why}. Point at a JSONL file or a directory written by "
        "datasets' save_to_disk instead; built-ins: countries, countries-ood, mmlu."
    )


def hf_splits(name_or_dir: str) -> tuple[str, ...]:
    """The splits of a hub dataset or local dataset directory, without reading its rows.

    A dataset dictionary's splits are its keys (for a hub id, asked of the hub). A single
    dataset has the distinct values of its ``split`` column, if it has one, else none: it
    *is* one split, as a JSONL file without ``split`` fields is.
    """
    import datasets

    if not os.path.isdir(name_or_dir):
        name, _, config = name_or_dir.partition(":")
        try:
            return tuple(datasets.get_dataset_split_names(name, config or None))
        except Exception as exc:  # as in _open
            raise _hub_error(name_or_dir, exc) from exc
    loaded = _open(name_or_dir, None)
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return tuple(loaded)
    if "split" in (loaded.column_names or ()):
        return tuple(sorted({str(s) for s in loaded.unique("split") if s not in (None, "")}))
    return ()


def _rows(dataset: Any, label: str) -> Iterator[tuple[str, Any]]:
    for index, row in enumerate(dataset):
        yield f"{label} row {index}", row


def read_hf(
    name_or_dir: str, *, split: str | None = None, skip_invalid: bool = False
) -> tuple[list[Item], list[str]]:
    """Items of a hub dataset or local dataset directory.

    Parameters
    ----------
    name_or_dir : str
        A hub id (``org/name`` or ``org/name:config``) or a local directory.
    split : str or None, default=None
        The split to read; None reads every split of a dataset dictionary, each item's
        ``split`` set to its name.
    skip_invalid : bool, default=False
        Skip malformed rows (see :func:`first_eval.data.jsonl.read_records`).

    Returns
    -------
    items : list of Item
    skipped : list of str
        ``"<dataset>[<split>] row <i>: reason"`` per skipped row.
    """
    import datasets

    loaded = _open(name_or_dir, split)
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split is not None and split not in loaded:
            raise UserError(
                f"dataset {name_or_dir!r} has no split {split!r}; it has {', '.join(loaded)}"
            )
        parts = [(split, loaded[split])] if split is not None else list(loaded.items())
    else:
        parts = [(split or "", loaded)]
    base = Path(name_or_dir).name if os.path.isdir(name_or_dir) else name_or_dir
    items: list[Item] = []
    skipped: list[str] = []
    for part_split, part in parts:
        label = f"{name_or_dir}[{part_split}]" if part_split else name_or_dir
        prefix = f"{base}/{part_split}" if part_split else base
        part_items, part_skipped = read_records(
            _rows(part, label), id_prefix=prefix, skip_invalid=skip_invalid, split=part_split
        )
        items += part_items
        skipped += part_skipped
    if not items:
        raise UserError(f"dataset {name_or_dir!r} holds no valid items")
    return items, skipped
