"""The multiple-choice scorer — the one place a model meets the items (STYLE.md 10).

:class:`Scorer` turns items into option probabilities with **one forward pass per question**:
the prompt (:mod:`first_eval.prompts`) ends where the answer letter would be written, and the
next-token logits at the last prompt position give three readings (DESIGN.md, "Measuring it"):

``probs``
    softmax over the option-letter logits (the canonical predictions);
``option_mass``
    the full-vocabulary probability that falls on the option letters;
``top1_correct``
    whether the full-vocabulary top-1 token is the gold letter (the paper's reading).

Why it is fast (and still exact):

* **Head at the last position only.** The decoder body runs over the prompt; the LM head
  (a hidden × vocabulary matmul, ~21% of SmolLM2's FLOPs per token) is applied to one gathered
  hidden state per question instead of every position.
* **Token-budget batches.** Items are sorted by length (longest first) and packed so that
  ``rows × longest ≤ batch_tokens``: little padding, and batches sized for the device (on CPU,
  small enough that activations stay in cache). Padding (left or right) is
  masked, positions are counted from each row's first real token, so a padded row gives what an
  unpadded single-item pass gives (tested within 1e-5).
* **Shared-prefix KV cache.** The longest token prefix every prompt shares — the few-shot block
  for k-shot prompts, the system turn for chat prompts — is encoded once; its key/value cache is
  expanded to each batch and only the rest of each prompt is run. Tokens are cut from each
  prompt's *joint* tokenization, so the model sees exactly the tokens of the whole prompt.
* **Shared bottom layers** (``shared_bottom``). Models trained with only their top layers share
  everything below them with their base: the states below the cut are computed once per batch
  for all of them (:class:`first_eval.layers.SharedBottom`), and each model runs its top layers.

Optionally (``option_text=True``) it also reads the option-text log-likelihood of
lm-evaluation-harness' ``acc``/``acc_norm``: the summed log-probability of ``" " + option text``
after the prompt (``acc_norm`` divides by the option's length in characters).

Under ``accelerate launch`` the items are split across processes and every process gets the
merged results in the original order (callers write them on the main process).

Example
-------
>>> scorer = Scorer(model, tokenizer, template="plain")        # doctest: +SKIP
>>> [s.probs for s in scorer.score(items)]                      # doctest: +SKIP
[(0.12, 0.71, 0.09, 0.08), ...]
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from first_eval.errors import UserError
from first_eval.faults import crash_point
from first_eval.prompts import LETTERS, MCItem, build_prompt, letter_prefix

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ItemScore", "Scorer", "default_batch_tokens", "process_state"]

_MIN_SHARED_PREFIX = 16
"""Cache a shared prefix only when it is at least this many tokens (below that it costs more)."""


@dataclass(frozen=True)
class ItemScore:
    """The scorer's reading of one item.

    Attributes
    ----------
    id : str
    label : int
        0-based index of the right option.
    probs : tuple of float, length n_options
        Softmax over the option-letter logits; sums to 1.
    option_mass : float
        Full-vocabulary probability on the option letters, in [0, 1].
    top1_correct : bool
        Whether the full-vocabulary argmax is the gold letter's token.
    prompt : str
        The exact prompt string the model saw.
    subject, split : str or None
    option_loglik : tuple of float or None
        Summed log-probability of ``" " + option text`` after the prompt (``option_text=True``).
    option_chars : tuple of int or None
        Character length of each option text, the ``acc_norm`` divisor.
    """

    id: str
    label: int
    probs: tuple[float, ...]
    option_mass: float
    top1_correct: bool
    prompt: str
    subject: str | None = None
    split: str | None = None
    option_loglik: tuple[float, ...] | None = None
    option_chars: tuple[int, ...] | None = None

    @property
    def prediction(self) -> int:
        """Argmax of ``probs`` (ties → lowest index)."""
        return int(np.argmax(self.probs))

    def as_row(self, *, model: str, dataset: str) -> dict[str, Any]:
        """One row of the predictions table (:mod:`first_eval.predictions`)."""
        row: dict[str, Any] = {
            "model": model, "dataset": dataset, "id": self.id, "probs": list(self.probs),
            "label": self.label, "prompt": self.prompt, "option_mass": self.option_mass,
            "top1_correct": self.top1_correct, "subject": self.subject, "split": self.split,
            "n_options": len(self.probs),
        }
        if self.option_loglik is not None:
            row["option_loglik"] = list(self.option_loglik)
            lls = np.asarray(self.option_loglik)
            row["acc"] = bool(np.argmax(lls) == self.label)
            row["acc_norm"] = bool(np.argmax(lls / np.maximum(self.option_chars, 1)) == self.label)
        return row


@dataclass(frozen=True)
class _Read:
    """Hidden states gathered for one sequence of a batch."""

    index: int           # position in the caller's list of sequences
    hidden: Any          # tensor (n_positions, hidden)


class Scorer:
    """Score multiple-choice items with one forward pass each.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM (``AutoModelForCausalLM``). Put in eval mode; left on its device and dtype.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer. Each option letter must encode to exactly one token after the prompt.
    template : {"plain", "chat"}, default="plain"
        See :mod:`first_eval.prompts`.
    fewshot : sequence of items, default=()
        Worked examples placed, with their answers, before every question
        (:func:`first_eval.prompts.select_fewshot` picks them).
    batch_tokens : int, optional
        Token budget of a batch: rows × longest row (not counting a cached shared prefix).
        Default :func:`default_batch_tokens` of the model's device: 1024 on CPU, where a batch's
        activations then stay in the processor's caches (measured 1.5× faster than 4096 on
        SmolLM2, 2 cores), 16384 on an accelerator.
    padding_side : {"left", "right"}, default="right"
        Where padding goes; results are the same either way. Right padding is faster: a causal
        model never attends to later positions, so no attention mask is built at all.
    cache_prefix : bool, default=True
        Encode the prompts' shared token prefix once and reuse its KV cache (when ≥ 16 tokens).
    option_text : bool, default=False
        Also read the option-text log-likelihood (lm-eval ``acc``/``acc_norm``); costs one
        extra pass per option.
    progress : bool, default=True
        Show a tqdm progress bar (main process only).
    shared_bottom : first_eval.layers.SharedBottom, optional
        Hidden states below a cut shared with other models of the same base (a model trained
        with only its top layers): each batch runs only the layers above the cut from the
        states another model computed for the same tokens (:mod:`first_eval.layers`; checked
        against the full forward, and off under several processes). The shared-prefix cache is
        not used with it.

    Raises
    ------
    UserError
        Unknown template or padding side, a non-positive budget, a chat template the tokenizer
        lacks.
    """

    def __init__(self, model: Any, tokenizer: Any, *, template: str = "plain",
                 fewshot: Sequence[MCItem] = (), batch_tokens: int | None = None,
                 padding_side: str = "right", cache_prefix: bool = True,
                 option_text: bool = False, progress: bool = True, shared_bottom: Any = None) -> None:
        if batch_tokens is None:
            batch_tokens = default_batch_tokens(next(model.parameters()).device)
        if batch_tokens < 1:
            raise UserError(f"expected a positive --batch-tokens, got {batch_tokens}")
        if padding_side not in ("left", "right"):
            raise UserError(f"expected padding_side 'left' or 'right', got {padding_side!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.fewshot = tuple(fewshot)
        self.batch_tokens = int(batch_tokens)
        self.padding_side = padding_side
        self.cache_prefix = cache_prefix
        self.option_text = option_text
        self.progress = progress
        self.shared_bottom = shared_bottom
        self._letter_prefix = letter_prefix(template)
        # Chat templates render their own special tokens (BOS included); the plain prompt gets
        # whatever the tokenizer adds by default.
        self._add_special = template == "plain"
        self._base = model.base_model
        self._head = model.get_output_embeddings()
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        params = inspect.signature(self._base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        pad = tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self._letters = self._resolve_letters()

    # ------------------------------------------------------------------ prompts and tokens
    def prompt(self, item: MCItem) -> str:
        """The exact prompt string for ``item``."""
        return build_prompt(item, self.template, tokenizer=self.tokenizer, fewshot=self.fewshot)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in
                self.tokenizer(texts, add_special_tokens=self._add_special)["input_ids"]]

    def _resolve_letters(self) -> list[int | str]:
        """Token id of each option letter as it follows a prompt, or why it cannot be read.

        The letter is appended to a probe prompt and the pair tokenized jointly: the letter must
        add exactly one token and leave the prompt's tokens unchanged.
        """
        from types import SimpleNamespace

        probe = SimpleNamespace(id="probe", question="Which letter?", label=0,
                                choices=tuple(f"option {c.lower()}" for c in LETTERS))
        text = build_prompt(probe, self.template, tokenizer=self.tokenizer)
        base = self._encode([text])[0]
        joint = self._encode([text + self._letter_prefix + c for c in LETTERS])
        out: list[int | str] = []
        for letter, ids in zip(LETTERS, joint):
            extra = ids[len(base):]
            if ids[:len(base)] != base or len(extra) != 1:
                shown = [self.tokenizer.decode([t]) for t in extra]
                out.append(f"option letter {self._letter_prefix + letter!r} after the prompt "
                           f"encodes as {len(extra)} tokens {shown}, not one token; the scorer "
                           "reads one next token per option")
            else:
                out.append(extra[0])
        ok = [t for t in out if isinstance(t, int)]
        if len(set(ok)) != len(ok):
            raise UserError("two option letters share one token in this tokenizer")
        return out

    def letter_ids(self, n_options: int) -> list[int]:
        """Token ids of the first ``n_options`` letters; :class:`UserError` if one is not one token."""
        ids = self._letters[:n_options]
        bad = [t for t in ids if not isinstance(t, int)]
        if bad:
            raise UserError(bad[0])
        return ids  # type: ignore[return-value]

    # ------------------------------------------------------------------ public API
    def score(self, items: Sequence[MCItem]) -> list[ItemScore]:
        """Score ``items``; results come back in the order given.

        Under ``accelerate launch`` each process scores its share and all processes receive
        the merged list.
        """
        items = list(items)
        state = process_state()
        if state is None:
            return self._score_local(items)
        from accelerate.utils import gather_object

        with state.split_between_processes(list(range(len(items)))) as mine:
            local = self._score_local([items[i] for i in mine], show=state.is_main_process)
            pairs = list(zip(mine, local))
        merged = gather_object(pairs)
        merged.sort(key=lambda pair: pair[0])
        return [s for _, s in merged]

    # ------------------------------------------------------------------ scoring
    def _score_local(self, items: list[MCItem], show: bool = True) -> list[ItemScore]:
        import torch

        if not items:
            return []
        prompts = [self.prompt(it) for it in items]
        seqs = self._encode(prompts)
        max_opts = max(len(it.choices) for it in items)
        letter_ids = torch.tensor(self.letter_ids(max_opts))
        n_opts = torch.tensor([len(it.choices) for it in items])
        labels = [int(it.label) for it in items]
        for it, n in zip(items, n_opts.tolist()):
            if not 0 <= int(it.label) < n:
                raise UserError(f"item {it.id!r}: label {it.label} out of range for {n} options")

        results: list[dict[str, Any] | None] = [None] * len(items)
        bar = self._bar(len(items), show, "scoring")
        with torch.inference_mode():
            for reads in self._forward(seqs, [0] * len(seqs)):
                idx = [r.index for r in reads]
                logits = self._logits(torch.cat([r.hidden for r in reads]))  # (b, V) float32
                logp = torch.log_softmax(logits.double(), dim=-1)
                letter_lp = logp[:, letter_ids.to(logp.device)]              # (b, max_opts)
                k = n_opts[idx].to(logp.device)
                valid = torch.arange(max_opts, device=logp.device)[None, :] < k[:, None]
                letter_lp = letter_lp.masked_fill(~valid, float("-inf"))
                probs = torch.softmax(letter_lp, dim=-1)
                mass = torch.logsumexp(letter_lp, dim=-1).exp()
                top1 = logits.argmax(dim=-1).cpu()
                for row, i in enumerate(idx):
                    n = int(n_opts[i])
                    results[i] = {
                        "probs": tuple(probs[row, :n].tolist()),
                        "option_mass": float(mass[row]),
                        "top1_correct": bool(int(top1[row]) == int(letter_ids[labels[i]])),
                    }
                bar.update(len(idx))
        bar.close()
        logliks = self._option_logliks(items, prompts, show) if self.option_text else None
        out = []
        for i, (it, prompt, res) in enumerate(zip(items, prompts, results)):
            assert res is not None
            out.append(ItemScore(
                id=str(it.id), label=labels[i], prompt=prompt,
                subject=getattr(it, "subject", None), split=getattr(it, "split", None),
                option_loglik=None if logliks is None else logliks[i],
                option_chars=None if logliks is None else tuple(len(c) for c in it.choices),
                **res,
            ))
        return out

    def _option_logliks(self, items: list[MCItem], prompts: list[str],
                        show: bool) -> list[tuple[float, ...]]:
        """Summed log p(" " + option text | prompt) per option, split as lm-eval splits it."""
        import torch

        owners, seqs, n_cont = [], [], []
        ctx = self._encode(prompts)
        for i, (it, prompt) in enumerate(zip(items, prompts)):
            joint = self._encode([prompt + " " + text for text in it.choices])
            for ids in joint:
                cont = max(1, len(ids) - len(ctx[i]))  # lm-eval: whole[len(context_enc):]
                owners.append(i)
                seqs.append(ids)
                n_cont.append(cont)
        sums = [0.0] * len(seqs)
        bar = self._bar(len(seqs), show, "option text")
        with torch.inference_mode():
            for reads in self._forward(seqs, n_cont):
                logits = self._logits(torch.cat([r.hidden for r in reads]))
                logp = torch.log_softmax(logits.double(), dim=-1)
                start = 0
                for r in reads:
                    t = n_cont[r.index]
                    target = torch.tensor(seqs[r.index][-t:], device=logp.device)
                    rows = logp[start:start + t]
                    sums[r.index] = float(rows.gather(1, target[:, None]).sum())
                    start += t
                bar.update(len(reads))
        bar.close()
        per_item: list[list[float]] = [[] for _ in items]
        for owner, s in zip(owners, sums):
            per_item[owner].append(s)
        return [tuple(v) for v in per_item]

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head on gathered hidden states (and the model's logit soft-capping, if any)."""
        import torch

        logits = self._head(hidden).float()
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    # ------------------------------------------------------------------ batching and forward
    def _forward(self, seqs: list[list[int]], n_targets: list[int]) -> Iterator[list[_Read]]:
        """Run the decoder body over ``seqs`` in token-budget batches.

        Yields, per batch, each sequence's final hidden states at the positions that predict
        its last ``n_targets`` tokens (``0``: just the last position, predicting the next token).
        """
        import torch

        device = next(self.model.parameters()).device
        keep = [t + 1 for t in n_targets]  # tokens each row must run itself (≥ 1)
        bottom = self.shared_bottom if process_state() is None else None
        shared = self._shared_prefix(seqs, keep) if self.cache_prefix and bottom is None else 0
        prefix_kv = self._encode_prefix(seqs[0][:shared], device) if shared else None
        if prefix_kv is None:
            shared = 0
        lengths = [len(s) - shared for s in seqs]
        order = sorted(range(len(seqs)), key=lambda i: (-lengths[i], i))
        for batch in _budget_batches(order, lengths, self.batch_tokens):
            rows, width = len(batch), lengths[batch[0]]
            ids = torch.full((rows, width), self._pad_id, dtype=torch.long)
            mask = torch.zeros((rows, width), dtype=torch.long)
            starts = []
            for r, i in enumerate(batch):
                n = lengths[i]
                lo = width - n if self.padding_side == "left" else 0
                ids[r, lo:lo + n] = torch.tensor(seqs[i][shared:])
                mask[r, lo:lo + n] = 1
                starts.append(lo)
            kwargs: dict[str, Any] = {"use_cache": shared > 0}
            if shared:
                kwargs[self._cache_kw] = _expand_cache(prefix_kv, rows)
            if self.padding_side == "left":
                # Pads sit before each row's tokens: mask them and count positions from the
                # row's first real token.
                kwargs["position_ids"] = ((mask.cumsum(1) - 1).clamp(min=0) + shared).to(device)
                kwargs["attention_mask"] = torch.cat(
                    [torch.ones((rows, shared), dtype=torch.long), mask], 1).to(device)
            # Right padding needs no mask: pads come after every real token and attention is
            # causal, so no real position can see one (positions default to shared + 0, 1, …).
            # Without a mask, SDPA runs its causal kernel on the grouped KV heads directly.
            if bottom is not None:
                hidden, _ = bottom.forward(self.model, ids.to(device), kwargs)
            else:
                hidden = self._base(input_ids=ids.to(device), **kwargs).last_hidden_state
            reads = []
            for r, i in enumerate(batch):
                end = starts[r] + lengths[i]             # one past the last real token
                t = n_targets[i]
                first = end - 1 if t == 0 else end - 1 - t
                last = end - 1 if t == 0 else end - 2
                reads.append(_Read(i, hidden[r, first:last + 1]))
            yield reads
            crash_point("score-batch")

    def _shared_prefix(self, seqs: list[list[int]], keep: list[int] | None = None) -> int:
        """Length of the longest token prefix all ``seqs`` share, leaving row ``i`` at least
        ``keep[i]`` tokens (default 1) to run; 0 when shorter than 16 tokens."""
        if len(seqs) < 2:
            return 0
        keep = keep or [1] * len(seqs)
        first = np.asarray(seqs[0])
        n = max(0, min(len(s) - k for s, k in zip(seqs, keep)))
        for s in seqs[1:]:
            head = np.asarray(s[:n])
            diff = np.flatnonzero(head != first[:n])
            if diff.size:
                n = int(diff[0])
            if n == 0:
                break
        return n if n >= _MIN_SHARED_PREFIX else 0

    def _encode_prefix(self, prefix: list[int], device: Any) -> list[tuple[Any, Any]] | None:
        """Key/value tensors of the shared prefix, one (k, v) pair per layer; None if unsupported."""
        import torch

        ids = torch.tensor([prefix], device=device)
        out = self._base(input_ids=ids, use_cache=True)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        layers = getattr(cache, "layers", None)
        if not layers or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
            return None  # sliding-window or other special caches: run the whole prompt
        return [(layer.keys, layer.values) for layer in layers]

    def _bar(self, total: int, show: bool, desc: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="q" if desc == "scoring" else "seq",
                    disable=not (self.progress and show), leave=False)


def default_batch_tokens(device: Any) -> int:
    """The token budget :class:`Scorer` uses by default on ``device``: 1024 on CPU, else 16384."""
    return 1024 if str(getattr(device, "type", device)) == "cpu" else 16384


def _expand_cache(prefix_kv: list[tuple[Any, Any]], rows: int) -> Any:
    """A fresh DynamicCache holding the prefix key/values repeated for ``rows`` batch rows.

    The layers hold broadcast *views* of the prefix tensors (no copy); the forward pass
    concatenates each batch's new keys/values onto them into new tensors, so the prefix is
    never written to and serves every batch.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = []
    for k, v in prefix_kv:
        layer = DynamicLayer()
        layer.lazy_initialization(k, v)
        layer.keys = k.expand(rows, -1, -1, -1)
        layer.values = v.expand(rows, -1, -1, -1)
        layers.append(layer)
    cache = DynamicCache()
    cache.layers = layers
    return cache


def _budget_batches(order: list[int], lengths: list[int], budget: int) -> Iterator[list[int]]:
    """Consecutive runs of ``order`` (longest first) with ``rows × longest ≤ budget`` (≥ 1 row)."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1) * lengths[batch[0]] > budget:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def process_state() -> Any:
    """accelerate's ``PartialState`` when running under several processes, else None.

    On machines without CUDA (or with ``ACCELERATE_USE_CPU=true``, as ``accelerate launch --cpu``
    sets) the processes join a CPU (gloo) group.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") \
        or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    return state if state.num_processes > 1 else None
