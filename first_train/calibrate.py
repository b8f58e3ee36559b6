"""Trustworthy maximization: fit the teacher's re-shaping temperature on a validation split.

DESIGN.md step 3 / issue 4 item 3. The teacher is run on the validation split and, at each item's
answer position, two things are read:

* its **top-k** ids and probabilities, round-tripped through the store's codec — exactly what a
  store of this split would hold, so ``c`` is fitted on the numbers distillation will re-shape;
* its **option-letter logits** — what the scorer reads (softmax over the letters).

**The answer distribution of a re-shaped top-k.** Re-shaping ``p'_i = softmax(p_i / c)`` acts on
the k stored tokens only; the scorer's answer distribution is a softmax over the option letters,
i.e. the model's distribution *conditioned on the answer being a letter*. Read the same way from
the re-shaped top-k, it is ``q_j = p'(letter_j) / Σ_l p'(letter_l)`` where ``p'(letter_j)`` is the
re-shaped probability of letter ``j`` if it is among the k stored tokens and **0 if it is not** —
the store knows nothing about a token outside the top-k except that it is less likely than all of
them, and any residual mass belongs to the other ``V − k`` tokens as much as to the letter. (After
fine-tuning the letters are nearly always the top tokens, so this rarely matters; the fraction of
items with every option letter in the top-k is recorded as ``coverage``.) If no option letter is in
the top-k the item gets the uniform distribution over its options. Without re-shaping (``c=None``)
this is the scorer's own softmax over the letters whenever all letters are in the top-k, which is
the ``ece_before`` of the ``reshape`` method.

**Two methods.** ``reshape`` searches ``c`` with :func:`first_train.reshape.grid_search_c` (coarse
0.1 steps over (0, 1], fine 0.02 steps around the best). ``logit-temperature`` scales the letter
log-probabilities, ``softmax(log q / T)``, over a grid of ``T`` (coarse 0.25 steps over
(0, 4], fine 0.05 around the best); distillation then uses ``softmax(log p_i / T)`` over the k.
Both include the un-calibrated teacher as a candidate, so the chosen setting never raises the
validation ECE (``ece_after <= ece_before``); when nothing beats it, ``temperature`` is ``None``.
``both`` fits both and records the one with the lower validation ECE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from first_eval.errors import UserError
from first_train.config import CalibrateConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "T_GRID",
    "TeacherReadout",
    "answer_probs_from_logits",
    "answer_probs_from_topk",
    "fit_logit_temperature",
    "fit_reshape",
    "read_teacher",
    "run_calibrate",
]

#: Coarse grid of the log-probability temperature: 0.25 steps over (0, 4].
T_GRID: tuple[float, ...] = tuple(round(0.25 * i, 10) for i in range(1, 17))
MANIFEST_METHOD = {"reshape": "reshape", "logit-temperature": "temperature"}


@dataclass(frozen=True)
class TeacherReadout:
    """What the teacher says at the answer position of each validation item.

    Attributes
    ----------
    topk_ids : ndarray of shape (n, k), int64
    topk_probs : ndarray of shape (n, k), float64
        As a store holds them (codec round trip), most likely first.
    option_ids : ndarray of shape (n, n_max), int64
        Token id of each option letter; ``-1`` pads items with fewer options.
    letter_logits : ndarray of shape (n, n_max), float64
        The teacher's logits of the option letters; ``-inf`` pads.
    labels : ndarray of shape (n,), int64
    """

    topk_ids: np.ndarray
    topk_probs: np.ndarray
    option_ids: np.ndarray
    letter_logits: np.ndarray
    labels: np.ndarray

    @property
    def n_options(self) -> np.ndarray:
        return (self.option_ids >= 0).sum(axis=1)

    def coverage(self) -> dict[str, float]:
        """Fractions of items with all / the gold / no option letters among the stored top-k."""
        hit = (self.option_ids[:, :, None] == self.topk_ids[:, None, :]).any(-1) & (self.option_ids >= 0)
        gold = hit[np.arange(len(self.labels)), self.labels]
        return {"all_letters": float((hit.sum(1) == self.n_options).mean()),
                "gold_letter": float(gold.mean()), "no_letter": float((hit.sum(1) == 0).mean())}


def answer_probs_from_topk(topk_ids: np.ndarray, topk_probs: np.ndarray, option_ids: np.ndarray, *,
                           c: float | None = None) -> np.ndarray:
    """The scorer-style answer distribution read from a (re-shaped) top-k.

    Parameters
    ----------
    topk_ids : array-like of shape (n, k)
    topk_probs : array-like of shape (n, k)
        Stored probabilities (need not sum to 1).
    option_ids : array-like of shape (n, n_max)
        Option-letter token ids, ``-1`` for padding.
    c : float, default=None
        Re-shaping temperature; ``None`` uses the stored probabilities as they are.

    Returns
    -------
    ndarray of shape (n, n_max)
        Rows sum to 1 over each item's options (padding 0). A letter outside the top-k gets 0;
        an item with no letter in the top-k is uniform over its options.

    Examples
    --------
    >>> ids = np.array([[11, 12, 99]]); p = np.array([[0.6, 0.3, 0.1]])
    >>> answer_probs_from_topk(ids, p, np.array([[11, 12, 13]])).round(3).tolist()
    [[0.667, 0.333, 0.0]]
    """
    from first_train.reshape import reshape_topk

    ids = np.asarray(topk_ids)
    probs = np.asarray(topk_probs, dtype=np.float64)
    options = np.asarray(option_ids)
    if c is not None:
        probs = reshape_topk(probs, c)
    match = (options[:, :, None] == ids[:, None, :]) & (options[:, :, None] >= 0)  # (n, n_max, k)
    mass = (match * probs[:, None, :]).sum(-1)
    total = mass.sum(1, keepdims=True)
    real = (options >= 0).astype(np.float64)
    uniform = real / real.sum(1, keepdims=True)
    return np.where(total > 0, mass / np.where(total > 0, total, 1.0), uniform)


def answer_probs_from_logits(letter_logits: np.ndarray, *, temperature: float | None = None) -> np.ndarray:
    """Softmax over the option-letter logits, optionally divided by ``temperature`` (``-inf`` pads).

    Examples
    --------
    >>> answer_probs_from_logits(np.array([[0.0, np.log(3.0), -np.inf]])).round(3).tolist()
    [[0.25, 0.75, 0.0]]
    """
    x = np.asarray(letter_logits, dtype=np.float64)
    if temperature is not None:
        x = x / temperature
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def _ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    from first_eval.calibration import expected_calibration_error

    return float(expected_calibration_error(probs, labels, n_bins=n_bins, scheme="width"))


def fit_reshape(readout: TeacherReadout, *, n_bins: int = 10) -> dict[str, Any]:
    """Grid-search FIRST's ``c``; the manifest's ``calibration`` record (method ``reshape``)."""
    from first_train.reshape import grid_search_c

    def ece_fn(c: float | None) -> float:
        return _ece(answer_probs_from_topk(readout.topk_ids, readout.topk_probs, readout.option_ids, c=c),
                    readout.labels, n_bins)

    return grid_search_c(ece_fn).as_calibration("reshape")


def fit_logit_temperature(readout: TeacherReadout, *, n_bins: int = 10) -> dict[str, Any]:
    """Grid-search the log-probability temperature ``T`` (method ``temperature`` in the manifest)."""
    from first_train.reshape import two_stage_grid_search

    def ece_fn(t: float | None) -> float:
        return _ece(answer_probs_from_logits(readout.letter_logits, temperature=t), readout.labels, n_bins)

    return two_stage_grid_search(ece_fn, T_GRID, fine_step=0.05, fine_radius=0.25).as_calibration("temperature")


def read_teacher(model: torch.nn.Module, examples: Sequence[Any], *, k: int, batch_size: int = 16,
                 pad_id: int = 0, device: Any = "cpu", progress: bool = False) -> TeacherReadout:
    """Run the teacher over ``examples`` and read its top-k and letter logits at the answer positions."""
    import torch

    from first_train.extract import teacher_batches, topk_of_logits
    from first_train.store import decode_probs, encode_probs

    n_max = max(len(e.option_ids) for e in examples)
    ids_out, probs_out, letters_out = [], [], []
    for batch, logits in teacher_batches(model, examples, mode="response", batch_size=batch_size,
                                         pad_id=pad_id, device=device, progress=progress,
                                         description="calibrate: teacher on val"):
        ids, probs = topk_of_logits(logits, k)
        probs = decode_probs(encode_probs(probs.cpu()), k)  # what a store keeps
        ids_out.append(ids.cpu())
        probs_out.append(probs)
        option = torch.full((len(batch), n_max), -1, dtype=torch.long)
        for row, e in enumerate(batch):
            option[row, :len(e.option_ids)] = torch.tensor(e.option_ids)
        gathered = logits.cpu().double().gather(1, option.clamp_min(0))
        letters_out.append(gathered.masked_fill(option < 0, float("-inf")))
    option_ids = np.full((len(examples), n_max), -1, dtype=np.int64)
    for row, e in enumerate(examples):
        option_ids[row, :len(e.option_ids)] = e.option_ids
    return TeacherReadout(topk_ids=torch.cat(ids_out).numpy(), topk_probs=torch.cat(probs_out).double().numpy(),
                          option_ids=option_ids, letter_logits=torch.cat(letters_out).numpy(),
                          labels=np.array([e.label for e in examples], dtype=np.int64))


def run_calibrate(cfg: CalibrateConfig) -> dict[str, Any]:
    """Fit the calibration of the store ``cfg.store`` and write it into its manifest.

    Returns ``{"chosen": record, "fits": {method: record}, "coverage": {...}, "n_items": n,
    "scorer_ece": the teacher's ECE read exactly as the scorer reads it}``; the chosen record (``method``, ``temperature``, ``ece_before``, ``ece_after``, ``grid``) is what
    the manifest holds.
    """

    from first_eval.zoo import load_model
    from first_train.data import load_examples, tokenizer_fingerprint
    from first_train.trainer import process_state

    store = _open_store(cfg.store)
    model, tokenizer = load_model(cfg.teacher)
    if tokenizer_fingerprint(tokenizer) != store.manifest["tokenizer_hash"]:
        raise UserError(f"--teacher {cfg.teacher} has another tokenizer than the store's teacher "
                        f"({store.manifest['teacher']})")
    if cfg.teacher != store.manifest["teacher"] and Path(cfg.teacher).resolve() != Path(store.manifest["teacher"]).resolve():
        import warnings

        warnings.warn(f"--teacher {cfg.teacher} is not the store's teacher {store.manifest['teacher']}", stacklevel=2)
    _, examples = load_examples(cfg.dataset, cfg.split, cfg.limit, tokenizer, template=cfg.template)
    state = process_state()
    model.to(state.device).eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    readout = read_teacher(model, examples, k=store.k, batch_size=cfg.batch_size, pad_id=pad_id,
                           device=state.device, progress=cfg.progress and state.is_main_process)
    fits: dict[str, dict[str, Any]] = {}
    if cfg.method in ("reshape", "both"):
        fits["reshape"] = fit_reshape(readout, n_bins=cfg.bins)
    if cfg.method in ("logit-temperature", "both"):
        fits["logit-temperature"] = fit_logit_temperature(readout, n_bins=cfg.bins)
    chosen = min(fits.values(), key=lambda r: r["ece_after"])  # ties: reshape (listed first)
    if state.is_main_process:
        store.set_calibration(**chosen)
    state.wait_for_everyone()
    scorer_ece = _ece(answer_probs_from_logits(readout.letter_logits), readout.labels, cfg.bins)
    return {"chosen": chosen, "fits": fits, "coverage": readout.coverage(), "n_items": len(examples), "k": store.k,
            "scorer_ece": scorer_ece}


def _open_store(path: str):
    from first_train.store import TopKStore

    try:
        return TopKStore(path)
    except ValueError as exc:
        raise UserError(f"--store {path}: {exc}") from None
