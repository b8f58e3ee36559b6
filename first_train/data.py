"""Multiple-choice items → token sequences with the positions to train on.

Training data is formatted by the scorer's own prompt function (:mod:`first_eval.prompts`) and the
answer is the exact option-letter token the scorer reads, so fine-tuning and distillation teach
the format the scorer measures. A sequence is the prompt's tokens followed by the gold letter's
token; the *response position* is the last prompt token, whose next-token logits the scorer reads
and whose target is the letter.

Positions are *aligned*: the logits at position ``t`` are trained towards ``targets[t]`` (the
token at ``t + 1``); ignored positions hold ``-100``. With ``positions="all"`` every position of
the sequence except the last is trained (language modelling of the prompt plus the answer).

Batches are right-padded; ``keep`` marks the positions whose logits are needed, and the models
compute the LM head only there (``logits_to_keep`` with a boolean mask), so a batch's logits are a
flat ``(N, V)`` array of its trained positions in row-major order — the order the top-k store keeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from first_eval.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["Example", "collate", "dataset_fingerprint", "encode_items", "example_tokens", "kept_logits",
           "load_examples",
           "option_token_ids", "prompt_token_ids", "tokenizer_fingerprint"]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One multiple-choice item as tokens.

    Attributes
    ----------
    id : str
        The item's id.
    input_ids : tuple of int
        Prompt tokens, then the gold option letter's token.
    answer_position : int
        Index of the last prompt token (its logits predict the answer letter), ``len(input_ids) - 2``.
    option_ids : tuple of int
        Token id of each option letter, as the scorer reads them (A, B, …).
    label : int
        0-based index of the right option.
    index : int
        Position of the item in the encoded list (rows of the top-k store follow it).
    """

    id: str
    input_ids: tuple[int, ...]
    answer_position: int
    option_ids: tuple[int, ...]
    label: int
    index: int

    def positions(self, mode: str) -> list[int]:
        """The trained positions: ``[answer_position]`` for ``"response"``, all but the last for ``"all"``."""
        if mode == "response":
            return [self.answer_position]
        if mode == "all":
            return list(range(len(self.input_ids) - 1))
        raise ValueError(f"Expected mode 'response' or 'all', got {mode!r}")


def example_tokens(example: Any) -> tuple[int, ...]:
    """The token ids of a training example: an :class:`Example` or a row wrapping one (``.example``)."""
    return getattr(example, "example", example).input_ids


def option_token_ids(tokenizer: Any, n_options: int, *, template: str = "plain") -> tuple[int, ...]:
    """The token id of each option letter as it follows the prompt (``" A"`` plain, ``"A"`` chat)."""
    from first_eval.prompts import LETTERS, letter_prefix

    prefix = letter_prefix(template)
    ids = []
    for letter in LETTERS[:n_options]:
        tokens = tokenizer(prefix + letter, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            raise UserError(f"the tokenizer splits option letter {prefix + letter!r} into {len(tokens)} tokens; "
                            "the scorer needs one token per letter")
        ids.append(int(tokens[0]))
    return tuple(ids)


def prompt_token_ids(item: Any, tokenizer: Any, *, template: str = "plain") -> list[int]:
    """The prompt's tokens exactly as the scorer encodes them.

    Like :class:`first_eval.scorer.Scorer`: the plain prompt gets whatever special tokens the
    tokenizer adds by default; a chat prompt already holds its own (none are added).
    """
    from first_eval.prompts import build_prompt

    text = build_prompt(item, template, tokenizer=tokenizer)
    return list(tokenizer(text, add_special_tokens=template == "plain")["input_ids"])


def encode_items(items: Sequence[Any], tokenizer: Any, *, template: str = "plain", max_length: int = 512) -> list[Example]:
    """Tokenize items exactly as the scorer presents them.

    Parameters
    ----------
    items : sequence of first_eval.data.Item
    tokenizer : transformers tokenizer
    template : {"plain", "chat"}, default="plain"
        The scorer's prompt template.
    max_length : int, default=512
        Longer sequences are refused (a clear error, not a silent truncation).

    Returns
    -------
    list of Example
    """
    examples = []
    letters_by_n: dict[int, tuple[int, ...]] = {}
    for index, item in enumerate(items):
        prompt_ids = prompt_token_ids(item, tokenizer, template=template)
        n = len(item.choices)
        if n not in letters_by_n:
            letters_by_n[n] = option_token_ids(tokenizer, n, template=template)
        letters = letters_by_n[n]
        ids = tuple(prompt_ids) + (letters[int(item.label)],)
        if len(ids) > max_length:
            raise UserError(f"item {item.id!r} is {len(ids)} tokens, over --max-length {max_length}")
        examples.append(Example(id=str(item.id), input_ids=ids, answer_position=len(prompt_ids) - 1,
                                option_ids=letters, label=int(item.label), index=index))
    return examples


def load_examples(dataset: str, split: str | None, limit: int | None, tokenizer: Any, *,
                  template: str = "plain", seed: int = 0, max_length: int = 512) -> tuple[list[Any], list[Example]]:
    """Load a dataset split and encode it: ``(items, examples)``."""
    from first_eval.data import load_dataset

    items = list(load_dataset(dataset, split=split, limit=limit, seed=seed))
    if not items:
        raise UserError(f"dataset {dataset!r} split {split!r} has no items")
    return items, encode_items(items, tokenizer, template=template, max_length=max_length)


def collate(examples: Sequence[Example], *, pad_id: int, mode: str = "response") -> dict[str, Any]:
    """Right-padded batch of examples.

    Returns
    -------
    dict with
        ``input_ids`` : LongTensor (B, L); ``attention_mask`` : LongTensor (B, L);
        ``targets`` : LongTensor (B, L), the token each position is trained towards or -100;
        ``keep`` : BoolTensor (B, L), the positions whose logits are computed (``targets != -100``);
        ``index`` : LongTensor (B,), the examples' indices.
    """
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        mask[row, :n] = 1
        pos = torch.tensor(e.positions(mode), dtype=torch.long)
        targets[row, pos] = ids[row, pos + 1]
    return {"input_ids": ids, "attention_mask": mask, "targets": targets, "keep": targets != IGNORE_INDEX,
            "index": torch.tensor([e.index for e in examples], dtype=torch.long)}


def kept_logits(model: torch.nn.Module, batch: dict[str, Any], *, full_logits: bool | None = None,
                frozen: bool = True) -> torch.Tensor:
    """Logits at the batch's kept positions, shape ``(1, N, V)`` (row-major over the batch).

    By default the LM head is applied only at the kept positions (``logits_to_keep`` with the
    boolean ``keep`` mask: the decoder's hidden states are gathered, then the head). With
    ``full_logits`` (default: the batch's ``"full_logits"`` entry, set by ``--full-logits``) the
    head runs at every position and the kept rows are selected afterwards — the reference path,
    equal to round-off. A batch carrying ``"frozen_hidden"`` (the cached output of the model's
    frozen bottom layers, :mod:`first_train.frozen`) runs only the top layers; ``frozen=False``
    ignores it (a teacher reading a student's batch).
    """
    if full_logits is None:
        full_logits = bool(batch.get("full_logits", False))
    inputs: dict[str, Any] = {"input_ids": batch["input_ids"]}
    top = None
    if frozen and batch.get("frozen_hidden") is not None:
        from first_train.frozen import top_layers_only

        inputs = {"inputs_embeds": batch["frozen_hidden"]}
        top = top_layers_only(model, int(batch["frozen_top"]))
    with top if top is not None else contextlib.nullcontext():
        out = model(**inputs, attention_mask=batch["attention_mask"],
                    logits_to_keep=0 if full_logits else batch["keep"], use_cache=False)
    logits = out.logits
    if logits.dim() == 3:  # every position (--full-logits, or a model that ignored the boolean mask)
        logits = logits[batch["keep"]]
    return logits.unsqueeze(0)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 (16 hex) of a tokenizer's vocabulary (token → id), for teacher/student checks."""
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dataset_fingerprint(examples: Sequence[Example]) -> str:
    """SHA-256 (16 hex) of the encoded examples (ids, tokens, labels) — what a store was built on."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps([e.id, e.input_ids, e.answer_position, e.option_ids, e.label]).encode())
    return digest.hexdigest()[:16]
