"""Multiple-choice records from JSON Lines files, in two layouts detected per file.

**Generic**::

    {"id": "q1", "question": "2 + 2 = ?", "choices": ["3", "4"], "answer": 1}

``answer`` is a 0-based index or a letter (``"B"``); ``id``, ``subject`` and ``split`` are
optional (the id defaults to ``<file stem>/<n>`` for the n-th record, from 1).

**CommonsenseQA / ARC / OpenBookQA**::

    {"id": "q1", "question": "2 + 2 = ?",
     "choices": {"label": ["A", "B"], "text": ["3", "4"]}, "answerKey": "B"}

as published on the Hugging Face hub; also the original files' forms — ``question`` as
``{"stem": ..., "choices": [{"label": "A", "text": ...}, ...]}`` and OpenBookQA's
``question_stem``. ``answerKey`` is matched against the choice labels, so ARC's numeric labels
(``"1"`` … ``"4"``) work too.

The layout is read off the first record (``answerKey`` → CommonsenseQA/ARC, ``answer`` →
generic) and every record of the file must follow it. A malformed record — bad JSON, no
question, no choices, fewer than 2 or more than 10, an answer out of range or an unknown
letter, a duplicate id — raises :class:`~first_eval.errors.UserError` naming ``file:line``;
with ``skip_invalid=True`` it is skipped and its reason returned (see :func:`read_jsonl`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from first_eval.data.items import LETTERS, MAX_CHOICES, MIN_CHOICES, Item
from first_eval.errors import UserError

__all__ = ["GENERIC", "LABELED", "InvalidItem", "detect_layout", "read_jsonl", "read_records"]

GENERIC = "generic"
LABELED = "commonsenseqa"  # choices with labels + answerKey: CommonsenseQA, ARC, OpenBookQA


_LAYOUT_NAMES = {GENERIC: "generic", LABELED: "CommonsenseQA/ARC/OpenBookQA"}


class InvalidItem(ValueError):
    """A record that is not a valid multiple-choice item (the message says why)."""


def detect_layout(record: Any) -> str:
    """``"commonsenseqa"`` if the record has ``answerKey``, ``"generic"`` if ``answer``."""
    if not isinstance(record, Mapping):
        raise InvalidItem(f"expected a JSON object, got {type(record).__name__}")
    if "answerKey" in record:
        return LABELED
    if "answer" in record:
        return GENERIC
    raise InvalidItem(
        "cannot tell the layout: expected 'question', 'choices' and 'answer' (generic) or "
        "'answerKey' (CommonsenseQA/ARC/OpenBookQA)"
    )


def _choice_texts(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        raise InvalidItem(f"'choices' must be a list, got {type(raw).__name__}")
    texts = []
    for choice in raw:
        if isinstance(choice, bool) or not isinstance(choice, (str, int, float)):
            raise InvalidItem(f"each choice must be text, got {choice!r}")
        texts.append(str(choice))
    return texts


def _count_ok(n: int) -> None:
    if n < MIN_CHOICES:
        raise InvalidItem(f"needs at least {MIN_CHOICES} choices, has {n}")
    if n > MAX_CHOICES:
        raise InvalidItem(f"has {n} choices; at most {MAX_CHOICES} are supported")


def _generic(record: Mapping[str, Any]) -> tuple[str, list[str], int]:
    question = record.get("question")
    if "choices" not in record:
        raise InvalidItem("no 'choices'")
    choices = _choice_texts(record["choices"])
    _count_ok(len(choices))
    answer = record.get("answer")
    if isinstance(answer, bool) or answer is None:
        raise InvalidItem(f"'answer' must be a 0-based index or a letter, got {answer!r}")
    if isinstance(answer, int):
        label = answer
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().isalpha():
        letter = answer.strip().upper()
        if letter not in LETTERS:
            raise InvalidItem(f"unknown answer letter {answer!r}")
        label = LETTERS.index(letter)
    else:
        raise InvalidItem(f"'answer' must be a 0-based index or a letter, got {answer!r}")
    if not 0 <= label < len(choices):
        shown = answer if isinstance(answer, int) else repr(answer)
        raise InvalidItem(f"answer {shown} is out of range for {len(choices)} choices")
    return question, choices, label


def _labeled(record: Mapping[str, Any]) -> tuple[str, list[str], int]:
    question = record.get("question", record.get("question_stem"))
    raw = record.get("choices")
    if isinstance(question, Mapping):  # original CommonsenseQA/ARC files
        raw = question.get("choices", raw)
        question = question.get("stem")
    if raw is None:
        raise InvalidItem("no 'choices'")
    if isinstance(raw, Mapping):
        labels, texts = raw.get("label"), raw.get("text")
        if not isinstance(labels, list) or not isinstance(texts, list):
            raise InvalidItem("'choices' must have lists 'label' and 'text'")
        if len(labels) != len(texts):
            raise InvalidItem(f"{len(labels)} choice labels but {len(texts)} texts")
        texts = _choice_texts(texts)
    elif isinstance(raw, list):
        if not all(isinstance(c, Mapping) for c in raw):
            raise InvalidItem("each choice must be an object with 'label' and 'text'")
        labels = [c.get("label") for c in raw]
        texts = _choice_texts([c.get("text") for c in raw])
    else:
        raise InvalidItem(f"'choices' must be an object or a list, got {type(raw).__name__}")
    _count_ok(len(texts))
    labels = [str(label).strip() for label in labels]
    key = str(record.get("answerKey", "")).strip()
    if key not in labels:
        raise InvalidItem(f"answerKey {key!r} is not one of the choice labels {labels}")
    return question, texts, labels.index(key)


def record_to_item(
    record: Any, layout: str, *, default_id: str, split: str = ""
) -> Item:
    """One record → :class:`Item`; raises :class:`InvalidItem` with the reason."""
    if not isinstance(record, Mapping):
        raise InvalidItem(f"expected a JSON object, got {type(record).__name__}")
    question, choices, label = (_labeled if layout == LABELED else _generic)(record)
    if not isinstance(question, str) or not question.strip():
        raise InvalidItem("no question text")
    raw_id = record.get("id")
    item_id = default_id if raw_id is None or raw_id == "" else str(raw_id)
    subject = record.get("subject")
    record_split = record.get("split")
    try:
        return Item(
            id=item_id,
            question=question,
            choices=tuple(choices),
            label=label,
            subject="" if subject is None else str(subject),
            split=split if record_split is None else str(record_split),
        )
    except ValueError as exc:  # pragma: no cover - the checks above come first
        raise InvalidItem(str(exc)) from exc


def read_records(
    records: Iterable[tuple[str, Any]],
    *,
    id_prefix: str,
    skip_invalid: bool = False,
    split: str = "",
) -> tuple[list[Item], list[str]]:
    """Turn ``(location, record)`` pairs into items, detecting the layout from the first.

    A record that is an :class:`InvalidItem` instance stands for one that failed to parse.
    Returns the items and, with ``skip_invalid``, one ``"location: reason"`` per skipped
    record; without it the first problem raises :class:`UserError`.
    """
    items: list[Item] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    layout, layout_at = None, ""
    for index, (location, record) in enumerate(records, 1):
        try:
            if isinstance(record, InvalidItem):
                raise record
            if layout is None:
                layout, layout_at = detect_layout(record), location
            elif isinstance(record, Mapping) and ("answerKey" in record) != (layout == LABELED):
                raise InvalidItem(
                    f"this record is not in the {_LAYOUT_NAMES[layout]} layout that the first "
                    f"record ({layout_at}) set for the whole file"
                )
            item = record_to_item(record, layout, default_id=f"{id_prefix}/{index}", split=split)
            if item.id in seen:
                raise InvalidItem(f"duplicate id {item.id!r} (first at {seen[item.id]})")
        except InvalidItem as exc:
            if not skip_invalid:
                raise UserError(f"{location}: invalid item: {exc}") from None
            skipped.append(f"{location}: {exc}")
            continue
        seen[item.id] = location
        items.append(item)
    return items, skipped


def _lines(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            location = f"{path}:{line_no}"
            try:
                yield location, json.loads(line)
            except json.JSONDecodeError as exc:
                yield location, InvalidItem(f"bad JSON ({exc.msg} at column {exc.colno})")


def read_jsonl(
    path: str | os.PathLike[str], *, skip_invalid: bool = False, split: str = ""
) -> tuple[list[Item], list[str]]:
    """Read a JSONL file of multiple-choice items (either layout, detected).

    Parameters
    ----------
    path : str or path-like
    skip_invalid : bool, default=False
        Skip malformed records instead of raising.
    split : str, default=""
        The ``split`` of items whose record has none.

    Returns
    -------
    items : list of Item
    skipped : list of str
        ``"file:line: reason"`` for every skipped record (empty unless ``skip_invalid``).

    Raises
    ------
    UserError
        For a malformed record (naming ``file:line``) unless ``skip_invalid``, or a file
        that holds no items.
    """
    file = Path(path)
    items, skipped = read_records(
        _lines(file), id_prefix=file.stem, skip_invalid=skip_invalid, split=split
    )
    if not items:
        note = f" ({len(skipped)} skipped)" if skipped else ""
        raise UserError(f"{file}: no valid items{note}")
    return items, skipped
