"""Predictions from OpenAI-compatible responses requested with ``logprobs``.

The input is JSON Lines, one multiple-choice item and the raw response to it a line::

    {"id": "q1", "question": "…", "choices": ["Lyon", "Paris"], "label": 1,
     "dataset": "…", "model": "…", "prompt": "…", "response": {…}}

``question``, ``dataset``, ``model``, ``prompt``, ``subject`` and ``split`` are optional.
``choices`` holds the option texts; a line whose texts are unknown gives ``"letters": ["A",
"B", "C", "D"]`` instead (it must be the first n letters, in order). ``label`` is the 0-based
index of the right option or its letter (``"B"``). ``response`` is the server's JSON body,
as a JSON object (or a string holding one). ``examples/query_openai.py`` writes such files.

Two response shapes are read, told apart by the shape of ``choices[0].logprobs`` (only the
first choice is read):

chat completions (``/v1/chat/completions`` with ``logprobs: true, top_logprobs: K``)
    ``logprobs.content`` is a list, one entry per generated token:
    ``{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, …]}``.
legacy completions (``/v1/completions`` with ``logprobs: K``)
    ``logprobs`` is ``{"tokens": […], "token_logprobs": […], "top_logprobs": [{token:
    logprob, …}, …], "text_offset": […]}``, one element per generated token (requests with
    ``echo`` are not supported: their first tokens are the prompt's).

The rule
--------
1. The answer token is the first generated token whose text is not empty or pure whitespace
   (``token.strip() != ""``). If every generated token is whitespace, the first generated
   token is used, and a note counts those items.
2. Its top logprobs are read over the option letters, the first ``n_options`` of ``A``,
   ``B``, ``C``, …: a listed token counts for letter ``L`` when ``token.strip() == L``, so
   ``"B"`` and ``" B"`` both count, and when both are listed their probabilities
   (``exp(logprob)``) add.
3. ``option_mass`` is the total probability of the listed tokens that count for some option
   letter, before any imputation.
4. A letter with no listed token gets the smallest probability listed in that top-k (an upper
   bound on its true probability: the true one is below every listed token's). Then the letter
   probabilities are renormalized to sum to 1 (in float64). If no letter is listed at all,
   every letter gets the floor, so the result is uniform; so it is if the letters' total is 0
   (every one at ``-inf`` or ``-9999``, the API's stand-in for it).
5. ``top1_correct`` is whether the most probable listed token (the first listed one on a tie)
   counts for the gold letter.

Each row records ``imputed_letters`` (how many of its letters rule 4 filled in) and
``reading = "openai-top-logprobs"``; one note line counts the items with at least one letter
imputed.

Two things servers do (seen with llama-cpp-python 0.3, ``tests/fixtures/openai/README.md``):
a model whose most likely first token is its end-of-sequence token gets a response with no
generated token and no logprobs (request ``min_tokens: 1`` where the server accepts it: vLLM,
llama-cpp-python); and the legacy ``top_logprobs`` objects are keyed by decoded text, so two
tokens that decode alike keep one entry, and a top-20 may list 19.

``model`` is the ``model`` argument, else the line's ``model``, else the response's
``model``; ``dataset`` is the argument, else the line's ``dataset``, else the file's stem.

A problem — malformed JSON, a missing ``id``/``label``/``response``, an error response, a
response without logprobs or without a generated token, a label out of range, fewer than 2
options, a duplicate item, an empty file — raises :class:`~first_eval.errors.UserError` naming
``file:line``; nothing is returned.

This module imports neither torch, transformers nor openai.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from first_eval.data.items import LETTERS, MAX_CHOICES, MIN_CHOICES
from first_eval.errors import UserError
from first_eval.fileio import json_lines
from first_eval.imports import ImportResult

__all__ = ["READING", "letter_probabilities", "read_openai"]

READING = "openai-top-logprobs"
"""The ``reading`` column of every row this importer writes."""

_CHAT = "chat-completions"
_COMPLETIONS = "completions"

_LOGPROBS_HINT = ("request them with `logprobs: true, top_logprobs: 20` (chat completions) "
                  "or `logprobs: 20` (completions)")


def letter_probabilities(
    top: Sequence[tuple[str, float]], n_options: int
) -> tuple[list[float], float, int, int | None]:
    """Option-letter probabilities from one position's top logprobs (the module's rule 2–5).

    Parameters
    ----------
    top : sequence of (str, float)
        The listed ``(token, logprob)`` pairs, at least one.
    n_options : int
        How many letters (``A``, ``B``, … ``LETTERS[n_options - 1]``).

    Returns
    -------
    probs : list of float, length n_options
        Summing to 1 (float64).
    option_mass : float
        Total probability of the listed tokens that count for a letter.
    imputed : int
        How many letters had no listed token and got the floor.
    top1 : int or None
        The letter index the most probable listed token counts for, None if it is no letter.

    Example
    -------
    >>> import math
    >>> probs, mass, imputed, top1 = letter_probabilities(
    ...     [(" B", math.log(0.5)), ("B", math.log(0.2)), ("A", math.log(0.2)), ("x", math.log(0.1))], 3)
    >>> [round(p, 4) for p in probs], round(mass, 4), imputed, top1
    ([0.2, 0.7, 0.1], 0.9, 1, 1)
    """
    if not top:
        raise ValueError("Expected at least one listed (token, logprob) pair, got none")
    index = {letter: i for i, letter in enumerate(LETTERS[:n_options])}
    listed = np.exp(np.array([lp for _, lp in top], dtype=np.float64))
    letters = np.array([index.get(tok.strip(), -1) for tok, _ in top], dtype=np.int64)
    hit = letters >= 0
    sums = np.bincount(letters[hit], weights=listed[hit], minlength=n_options)
    present = np.bincount(letters[hit], minlength=n_options) > 0
    option_mass = float(listed[hit].sum())
    floor = float(listed.min())
    probs = np.where(present, sums, floor)
    total = probs.sum()
    probs = probs / total if total > 0 else np.full(n_options, 1.0 / n_options)
    best = int(np.argmax(listed))
    top1 = int(letters[best]) if letters[best] >= 0 else None
    return [float(p) for p in probs], option_mass, int((~present).sum()), top1


def read_openai(
    path: str | os.PathLike, *, model: str | None = None, dataset: str | None = None
) -> ImportResult:
    """Read OpenAI-compatible responses (JSONL) into predictions rows.

    Parameters
    ----------
    path : str or path-like
        A JSONL file, one item and its raw response a line (see the module docstring).
    model : str, optional
        Model name for every row; default the line's ``model``, else the response's.
    dataset : str, optional
        Dataset name for every row; default the line's ``dataset``, else the file's stem.

    Returns
    -------
    ImportResult
        One row per line (``model``, ``dataset``, ``id``, ``probs``, ``label``, ``option_mass``,
        ``top1_correct``, ``n_options``, ``imputed_letters``, ``reading`` and, when given,
        ``prompt``, ``subject``, ``split``) and the notes.

    Raises
    ------
    UserError
        On the first problem, as ``"<path>:<line>: …"``.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory; expected a JSONL file of responses")
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str], int] = {}
    formats: dict[str, int] = {}
    touched, whitespace_only = 0, 0
    k_touched: set[int] = set()
    for lineno, obj in json_lines(p):
        where = f"{p}:{lineno}"
        row, fmt, k, all_space = _row(obj, where, model=model, dataset=dataset, stem=p.stem)
        key = (row["model"], row["dataset"], row["id"])
        if key in seen:
            raise UserError(f"{where}: duplicate item id {row['id']!r} (first at line {seen[key]})")
        seen[key] = lineno
        formats[fmt] = formats.get(fmt, 0) + 1
        if row["imputed_letters"]:
            touched += 1
            k_touched.add(k)
        whitespace_only += all_space
        rows.append(row)
    if not rows:
        raise UserError(f"{p}: no responses (the file is empty)")

    notes = [f"read {len(rows)} item(s) from " + " and ".join(
        f"{n} {fmt} response(s)" for fmt, n in formats.items())]
    if touched:
        ks = sorted(k_touched)
        k_text = f"top-{ks[0]}" if len(ks) == 1 else f"top-{ks[0]} to top-{ks[-1]}"
        notes.append(
            f"{touched} of {len(rows)} items had option letters outside the answer token's "
            f"{k_text} logprobs; each missing letter got the smallest listed probability "
            "(an upper bound), then the letters were renormalized")
    if whitespace_only:
        notes.append(f"{whitespace_only} of {len(rows)} items generated only whitespace; "
                     "their first generated token's top logprobs were read")
    return ImportResult(frame=pd.DataFrame(rows), notes=notes)


# --------------------------------------------------------------------------- one line
def _row(obj: Mapping[str, Any], where: str, *, model: str | None, dataset: str | None,
         stem: str) -> tuple[dict[str, Any], str, int, bool]:
    missing = [f for f in ("id", "label", "response") if obj.get(f) is None or obj.get(f) == ""]
    if missing:
        raise UserError(f"{where}: missing field {', '.join(repr(m) for m in missing)}")
    item_id = obj["id"]
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)):
        raise UserError(f"{where}: expected 'id' to be a string, got {item_id!r}")
    n_options = _n_options(obj, where)
    label = _label(obj["label"], n_options, where)
    response = _response(obj["response"], where)
    fmt, top, k, all_space = _answer_top(response, where)
    probs, mass, imputed, top1 = letter_probabilities(top, n_options)

    name = model or obj.get("model") or response.get("model")
    if not isinstance(name, str) or not name:
        raise UserError(f"{where}: no model name (pass --model, or give the line a 'model' field)")
    data_name = dataset or obj.get("dataset") or stem
    if not isinstance(data_name, str):
        raise UserError(f"{where}: expected 'dataset' to be a string, got {data_name!r}")
    row: dict[str, Any] = {
        "model": name, "dataset": data_name, "id": str(item_id), "probs": probs, "label": label,
    }
    for opt in ("prompt", "subject", "split"):
        if isinstance(obj.get(opt), str):
            row[opt] = obj[opt]
    row.update(option_mass=mass, top1_correct=top1 == label, n_options=n_options,
               imputed_letters=imputed, reading=READING)
    return row, fmt, k, all_space


def _n_options(obj: Mapping[str, Any], where: str) -> int:
    choices, letters = obj.get("choices"), obj.get("letters")
    if choices is None and letters is None:
        raise UserError(f"{where}: missing field 'choices' (the option texts) or 'letters'")
    for name, value in (("choices", choices), ("letters", letters)):
        if value is not None and not isinstance(value, list):
            raise UserError(f"{where}: expected '{name}' to be a list, got {type(value).__name__}")
    n = len(choices) if choices is not None else len(letters)
    if n < MIN_CHOICES:
        raise UserError(f"{where}: fewer than {MIN_CHOICES} options ({n})")
    if n > MAX_CHOICES:
        raise UserError(f"{where}: {n} options; at most {MAX_CHOICES} are supported")
    if letters is not None:
        want = list(LETTERS[:n])
        if [str(x).strip() for x in letters] != want:
            raise UserError(f"{where}: expected 'letters' to be {want} for {n} options, got {letters!r}")
    return n


def _label(value: Any, n_options: int, where: str) -> int:
    if isinstance(value, bool):
        raise UserError(f"{where}: expected 'label' to be an index or a letter, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value < n_options:
            raise UserError(f"{where}: label {value} out of range for {n_options} options")
        return value
    if isinstance(value, str):
        letter = value.strip().upper()
        if len(letter) == 1 and letter in LETTERS:
            index = LETTERS.index(letter)
            if index >= n_options:
                raise UserError(f"{where}: label {value!r} out of range for {n_options} options "
                                f"(A–{LETTERS[n_options - 1]})")
            return index
    raise UserError(f"{where}: expected 'label' to be an index or a letter, got {value!r}")


def _response(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: 'response' is a string but not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected 'response' to be a JSON object, got {type(value).__name__}")
    if "error" in value and value["error"]:
        err = value["error"]
        message = err.get("message", err) if isinstance(err, dict) else err
        raise UserError(f"{where}: the response is an error: {message}")
    return value


def _answer_top(response: Mapping[str, Any], where: str) -> tuple[str, list[tuple[str, float]], int, bool]:
    """(format, the answer token's listed (token, logprob) pairs, k, whether all tokens were blank)."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UserError(f"{where}: the response has no 'choices'")
    logprobs = choices[0].get("logprobs")
    if logprobs is None:
        raise UserError(f"{where}: the response has no logprobs; {_LOGPROBS_HINT}")
    if isinstance(logprobs, dict) and "content" in logprobs:
        fmt = _CHAT
        content = logprobs["content"]
        if content is None:
            raise UserError(f"{where}: the response has no logprobs; {_LOGPROBS_HINT}")
        if not isinstance(content, list) or not all(isinstance(e, dict) for e in content):
            raise UserError(f"{where}: expected 'logprobs.content' to be a list of objects")
        tokens = [e.get("token") for e in content]
        tops = [e.get("top_logprobs") for e in content]
    elif isinstance(logprobs, dict) and "tokens" in logprobs:
        fmt = _COMPLETIONS
        tokens = logprobs["tokens"]
        tops = logprobs.get("top_logprobs")
        if not isinstance(tokens, list) or not isinstance(tops, list) or len(tops) != len(tokens):
            raise UserError(f"{where}: expected 'logprobs.tokens' and 'logprobs.top_logprobs' "
                            "to be lists of the same length")
    else:
        raise UserError(f"{where}: unrecognised logprobs (expected chat-completions "
                        "'logprobs.content' or completions 'logprobs.tokens')")
    if not tokens:
        reason = choices[0].get("finish_reason")
        hint = (" (finish_reason 'stop': the model ended at once; where the server accepts it, "
                "request `min_tokens: 1`)" if reason == "stop" else "")
        raise UserError(f"{where}: the response has no generated token{hint}")
    if not all(isinstance(t, str) for t in tokens):
        raise UserError(f"{where}: expected every generated token to be a string")
    position = next((i for i, t in enumerate(tokens) if t.strip()), None)
    all_space = position is None
    top = _pairs(tops[0 if all_space else position], fmt, where)
    if not top:
        raise UserError(f"{where}: the answer token has no top logprobs; {_LOGPROBS_HINT}")
    return fmt, top, len(top), all_space


def _pairs(raw: Any, fmt: str, where: str) -> list[tuple[str, float]]:
    if raw is None:
        return []
    if fmt == _CHAT:
        if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
            raise UserError(f"{where}: expected 'top_logprobs' to be a list of objects")
        pairs = [(e.get("token"), e.get("logprob")) for e in raw]
    else:
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected each 'top_logprobs' entry to be an object of token: logprob")
        pairs = list(raw.items())
    for token, lp in pairs:
        if not isinstance(token, str):
            raise UserError(f"{where}: expected a top-logprobs token to be a string, got {token!r}")
        if isinstance(lp, bool) or not isinstance(lp, (int, float)) or math.isnan(lp) or lp > 1e-6:
            raise UserError(f"{where}: token {token!r} has logprob {lp!r}; expected a number <= 0")
    return [(token, min(float(lp), 0.0)) for token, lp in pairs]
