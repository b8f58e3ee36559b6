"""The typed multiple-choice item every dataset loader returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LETTERS", "MAX_CHOICES", "MIN_CHOICES", "Item"]

MIN_CHOICES = 2
MAX_CHOICES = 10
LETTERS = "ABCDEFGHIJ"
"""Option letters, in order; option ``k`` is ``LETTERS[k]``."""


@dataclass(frozen=True)
class Item:
    """One multiple-choice question.

    Attributes
    ----------
    id : str
        Stable, unique within a dataset (e.g. ``"countries/capital/FRA"``).
    question : str
        The question text, without the options.
    choices : tuple of str
        The option texts, 2 to 10 of them, in presentation order.
    label : int
        0-based index of the correct option.
    subject : str, default=""
        A grouping for stratified subsets and per-subject reports (MMLU topic, country field).
    split : str, default=""
        ``"train"``, ``"val"``, ``"test"`` or whatever the source calls it.

    Example
    -------
    >>> Item("q1", "2 + 2 = ?", ("3", "4"), 1).choices[1]
    '4'
    """

    id: str
    question: str
    choices: tuple[str, ...]
    label: int
    subject: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.choices, tuple):
            object.__setattr__(self, "choices", tuple(self.choices))
        n = len(self.choices)
        if not MIN_CHOICES <= n <= MAX_CHOICES:
            raise ValueError(
                f"Expected {MIN_CHOICES} to {MAX_CHOICES} choices, got {n}"
            )
        if not all(isinstance(c, str) for c in self.choices):
            raise ValueError("Expected every choice to be a string")
        if isinstance(self.label, bool) or not isinstance(self.label, int):
            raise ValueError(f"Expected an integer label, got {self.label!r}")
        if not 0 <= self.label < n:
            raise ValueError(f"Expected a label in 0..{n - 1}, got {self.label}")
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError("Expected a non-empty question")
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("Expected a non-empty string id")

    @property
    def answer_letter(self) -> str:
        """The gold option's letter, ``"A"`` for label 0."""
        return LETTERS[self.label]
