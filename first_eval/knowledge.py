"""The concentrated-knowledge study: how much of a model's next-token mass sits in its top k.

FIRST (Shum et al., EMNLP 2024) keeps only the teacher's top-k tokens per position, arguing that the top
5 carry > 95% of the probability mass. This module measures that for any model and text, at the
response positions (where the answer letter is predicted) and at all positions of the text:

- ``mass@k`` — the probability mass of the k most likely tokens, k = 1 … max_k;
- ``KL(full ‖ top-k)`` — what storing only the top k (plus the rest of the mass, spread evenly
  over the other V − k tokens) loses, in nats;
- ``−log mass@k`` — KL(renormalized top-k ‖ full), the divergence of the distribution a
  top-k store without a rest bucket trains towards;
- bytes per position for a top-k store against the full fp16 row.

The pure functions work on NumPy arrays; :func:`collect_topk` runs a model (torch, imported lazily).

References
----------
Shum, K., Xu, M., Zhang, J., Chen, Z., Diao, S., Dong, H., Zhang, J. and Raza, M. O. "FIRST: Teach
A Reliable Large Language Model Through Efficient Trustworthy Distillation." EMNLP 2024,
arXiv:2408.12168.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class TopK:
    """Top-``max_k`` probabilities of many positions, sorted descending.

    Attributes
    ----------
    probs : ndarray of shape (n_positions, max_k)
    plogp : ndarray of shape (n_positions,)
        Σ_v p_v log p_v over the whole vocabulary (minus the entropy), for the KL.
    vocab_size : int
    """

    probs: np.ndarray
    plogp: np.ndarray
    vocab_size: int


def mass_at_k(topk: np.ndarray) -> np.ndarray:
    """Cumulative top-k mass, array of shape (n_positions, max_k); column j is mass@(j+1).

    Examples
    --------
    >>> mass_at_k(np.array([[0.5, 0.3, 0.1]])).round(3).tolist()
    [[0.5, 0.8, 0.9]]
    """
    return np.cumsum(np.asarray(topk, dtype=np.float64), axis=1)


def kl_full_vs_topk(top: TopK) -> np.ndarray:
    """KL(p ‖ q_k) per position and k, shape (n_positions, max_k).

    q_k keeps the k largest probabilities of p and spreads the remaining mass 1 − mass@k evenly
    over the other V − k tokens, so q_k = p on the top k and the KL is finite:

        KL = Σ_{i>k} p_i log p_i − (1 − m_k) log((1 − m_k) / (V − k)).
    """
    p = np.asarray(top.probs, dtype=np.float64)
    V = top.vocab_size
    k = np.arange(1, p.shape[1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        head_plogp = np.cumsum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
        rest = np.clip(1.0 - np.cumsum(p, axis=1), 0.0, 1.0)
        tail_plogp = top.plogp[:, None] - head_plogp
        rest_term = np.where(rest > 0, rest * np.log(rest / (V - k)[None, :]), 0.0)
    return np.maximum(tail_plogp - rest_term, 0.0)


def store_bytes_per_position(k: int, vocab_size: int) -> int:
    """Payload bytes a position takes in the top-k store (:mod:`first_train.store.codec`):
    ids as uint16 (int32 past 65,536 tokens) plus the probabilities packed in 12 bits for rank 0
    and 9 bits for each later rank — ``3k + 1`` bytes with uint16 ids, 16 at k = 5.

    Computed here without importing torch; a test checks it against the store's own formula.

    Examples
    --------
    >>> store_bytes_per_position(5, 49152)
    16
    """
    id_bytes = 2 if vocab_size <= 1 << 16 else 4
    return k * id_bytes + -(-(12 + 9 * (k - 1)) // 8)


def summarize(top: TopK, *, positions: str) -> dict:
    """Summary of one set of positions: mean/quantiles of mass@k, KL vs k, the mass@5 histogram."""
    m = mass_at_k(top.probs)
    kl = kl_full_vs_topk(top)
    n, max_k = m.shape
    ks = list(range(1, max_k + 1))
    hist_edges = np.linspace(0.0, 1.0, 21)
    col5 = m[:, min(5, max_k) - 1]
    counts, _ = np.histogram(np.clip(col5, 0, 1), bins=hist_edges)
    return {
        "positions": positions,
        "n_positions": int(n),
        "k": ks,
        "mass_mean": m.mean(axis=0).tolist(),
        "mass_quantiles": {str(q): np.quantile(m, q, axis=0).tolist() for q in QUANTILES},
        "share_mass_over_0_95": (m > 0.95).mean(axis=0).tolist(),
        "kl_full_vs_topk_mean": kl.mean(axis=0).tolist(),
        "neg_log_mass_mean": (-np.log(np.clip(m, 1e-12, None))).mean(axis=0).tolist(),
        "bytes_per_position": [store_bytes_per_position(k, top.vocab_size) for k in ks],
        "full_row_bytes_fp16": 2 * top.vocab_size,
        "mass5_histogram": {"edges": hist_edges.tolist(), "counts": counts.tolist()},
    }


def collect_topk(model, tokenizer, texts: list[str], response_starts: list[int], *, max_k: int = 20,
                 batch_size: int = 4, progress: bool = True) -> tuple[TopK, TopK]:
    """Run ``model`` over ``texts`` and collect top-``max_k`` next-token probabilities.

    Parameters
    ----------
    texts : list of str
        Full texts (prompt + answer).
    response_starts : list of int
        Per text, the token index of the first response token; the position before it (which
        predicts it) and every later position predicting a response token are response positions.

    Returns
    -------
    response, everywhere : TopK
        At the response positions, and at every position of the texts that predicts a next token.
    """
    import torch
    from tqdm.auto import tqdm

    resp_p, resp_h, all_p, all_h = [], [], [], []
    vocab = None
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.inference_mode():
        for s in tqdm(range(0, len(order), batch_size), desc="top-k mass", disable=not progress, unit="batch"):
            idx = order[s: s + batch_size]
            for i in idx:  # one sequence at a time: no padding to get wrong, T×V logits stay small
                ids = tokenizer(texts[i], return_tensors="pt", add_special_tokens=False)["input_ids"]
                logits = model(input_ids=ids).logits[0, :-1].float()
                logp = torch.log_softmax(logits, dim=-1)
                p = logp.exp()
                vocab = p.shape[-1]
                top = torch.topk(p, k=min(max_k, vocab), dim=-1).values.double().numpy()
                plogp = (p * logp).sum(-1).double().numpy()
                start = max(response_starts[i] - 1, 0)
                resp_p.append(top[start:])
                resp_h.append(plogp[start:])
                all_p.append(top)
                all_h.append(plogp)
    return (TopK(np.concatenate(resp_p), np.concatenate(resp_h), int(vocab)),
            TopK(np.concatenate(all_p), np.concatenate(all_h), int(vocab)))
