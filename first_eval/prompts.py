"""Prompt templates for multiple-choice items: the exact strings the scorer feeds the model.

Two templates, both ending exactly where the model would write the answer letter, so the
letter is the *next token* and one forward pass reads it:

``plain``
    ::

        Question: What is the capital of France?
        A. Lyon
        B. Paris
        Answer:

    The letter follows ``Answer:`` after a space, so the option tokens are ``" A"``, ``" B"``, …
    (:data:`PLAIN_LETTER_PREFIX`). This is lm-evaluation-harness' layout for MMLU-style tasks
    (``doc_to_choice: ["A", "B", …]`` with the default ``target_delimiter: " "``).
    With k shots, each example precedes the question as ``<its block> B\\n\\n`` (lm-eval's
    default ``fewshot_delimiter: "\\n\\n"``).
``chat``
    The model's own chat template (``tokenizer.apply_chat_template``) with the question and its
    options as the user turn (:func:`user_message`) and ``add_generation_prompt=True``: the
    prompt ends with the assistant header (for SmolLM2, ``<|im_start|>assistant\\n``), so the
    first token the assistant writes is the letter, without a leading space (``"A"``).
    With k shots, each example is a user turn followed by an assistant turn holding only
    its letter.

Items are duck-typed: anything with ``question`` (str), ``choices`` (sequence of str) and
``label`` (int) attributes — :class:`first_eval.data.Item` in practice.

This module imports neither torch nor transformers.

Example
-------
>>> from types import SimpleNamespace as Item
>>> q = Item(id="q1", question="2 + 2 =", choices=("3", "4"), label=1)
>>> print(plain_prompt(q, fewshot=[Item(id="s", question="1 + 1 =", choices=("2", "5"), label=0)]))
Question: 1 + 1 =
A. 2
B. 5
Answer: A
<BLANKLINE>
Question: 2 + 2 =
A. 3
B. 4
Answer:
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from first_eval.data.items import LETTERS
from first_eval.errors import UserError

__all__ = [
    "LETTERS",
    "PLAIN_LETTER_PREFIX",
    "TEMPLATES",
    "FEWSHOT_STRATEGIES",
    "MCItem",
    "build_prompt",
    "chat_messages",
    "letter_prefix",
    "plain_prompt",
    "question_block",
    "select_fewshot",
    "user_message",
]

TEMPLATES = ("plain", "chat")
PLAIN_LETTER_PREFIX = " "
"""What separates ``Answer:`` from the letter in the plain template (lm-eval's ``target_delimiter``)."""

FEWSHOT_STRATEGIES = ("first_n", "random")

_CHAT_INSTRUCTION = "Answer with the letter of the correct option."


class MCItem(Protocol):
    """What a prompt needs from an item (``first_eval.data.Item`` satisfies it)."""

    question: str
    choices: Sequence[str]
    label: int


def _check_choices(item: Any) -> None:
    n = len(item.choices)
    if not 2 <= n <= len(LETTERS):
        raise UserError(
            f"item {getattr(item, 'id', '?')!r}: expected 2 to {len(LETTERS)} options, got {n}"
        )


def question_block(item: MCItem) -> str:
    """``Question: …\\nA. …\\nB. …\\nAnswer:`` — one item in the plain template, no trailing space."""
    _check_choices(item)
    options = "".join(f"\n{LETTERS[i]}. {text}" for i, text in enumerate(item.choices))
    return f"Question: {item.question}{options}\nAnswer:"


def plain_prompt(item: MCItem, fewshot: Sequence[MCItem] = ()) -> str:
    """The plain prompt: each few-shot example with its answer letter, then the question.

    Parameters
    ----------
    item : MCItem
        The question to ask.
    fewshot : sequence of MCItem, default=()
        Worked examples placed before it, each as ``<block> <letter>\\n\\n``.
    """
    shots = "".join(
        f"{question_block(ex)}{PLAIN_LETTER_PREFIX}{LETTERS[ex.label]}\n\n" for ex in fewshot
    )
    return shots + question_block(item)


def user_message(item: MCItem) -> str:
    """The user turn of the chat template: the question, its lettered options and an instruction."""
    _check_choices(item)
    options = "".join(f"\n{LETTERS[i]}. {text}" for i, text in enumerate(item.choices))
    return f"{item.question}{options}\n{_CHAT_INSTRUCTION}"


def chat_messages(item: MCItem, fewshot: Sequence[MCItem] = ()) -> list[dict[str, str]]:
    """Chat messages: one (user, assistant-letter) pair per example, then the question as user."""
    messages: list[dict[str, str]] = []
    for ex in fewshot:
        messages.append({"role": "user", "content": user_message(ex)})
        messages.append({"role": "assistant", "content": LETTERS[ex.label]})
    messages.append({"role": "user", "content": user_message(item)})
    return messages


def build_prompt(item: MCItem, template: str, *, tokenizer: Any = None,
                 fewshot: Sequence[MCItem] = ()) -> str:
    """The exact prompt string for ``item`` under ``template`` (``"plain"`` or ``"chat"``).

    The ``chat`` template needs the ``tokenizer`` (its ``chat_template``) and raises
    :class:`UserError` when the tokenizer has none.
    """
    if template == "plain":
        return plain_prompt(item, fewshot)
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise UserError("--template chat needs a tokenizer with a chat template; "
                            "this one has none (use --template plain)")
        text = tokenizer.apply_chat_template(chat_messages(item, fewshot), tokenize=False,
                                             add_generation_prompt=True)
        if not isinstance(text, str):  # some versions return a list for batched input
            raise UserError(f"the tokenizer's chat template returned {type(text).__name__}, not a string")
        return text
    raise UserError(f"unknown template {template!r}; expected one of {', '.join(TEMPLATES)}")


def letter_prefix(template: str) -> str:
    """What precedes the answer letter right after the prompt: ``" "`` (plain) or ``""`` (chat)."""
    if template not in TEMPLATES:
        raise UserError(f"unknown template {template!r}; expected one of {', '.join(TEMPLATES)}")
    return PLAIN_LETTER_PREFIX if template == "plain" else ""


def select_fewshot(pool: Iterable[MCItem], k: int, *, strategy: str = "first_n", seed: int = 0,
                   exclude_ids: Iterable[str] = ()) -> list[MCItem]:
    """Pick the ``k`` worked examples placed before every question.

    Parameters
    ----------
    pool : iterable of MCItem
        Where examples come from (usually a train split), in its order.
    k : int
        How many; 0 gives ``[]``.
    strategy : {"first_n", "random"}, default="first_n"
        ``first_n`` takes the first ``k`` (lm-eval's ``sampler: first_n``); ``random`` draws
        ``k`` without replacement with ``seed``.
    exclude_ids : iterable of str, default=()
        Item ids never used as examples (the questions being scored).

    Raises
    ------
    UserError
        When ``k`` is negative or the pool holds fewer than ``k`` usable examples.
    """
    if k < 0:
        raise UserError(f"expected a non-negative number of shots, got {k}")
    if strategy not in FEWSHOT_STRATEGIES:
        raise UserError(f"unknown few-shot strategy {strategy!r}; expected one of "
                        f"{', '.join(FEWSHOT_STRATEGIES)}")
    if k == 0:
        return []
    excluded = {str(i) for i in exclude_ids}
    usable = [ex for ex in pool if str(getattr(ex, "id", "")) not in excluded]
    if len(usable) < k:
        raise UserError(f"asked for {k} few-shot examples but the pool has only {len(usable)}")
    if strategy == "first_n":
        return usable[:k]
    return random.Random(seed).sample(usable, k)
