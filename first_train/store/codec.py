"""Compact encodings of a position's top-k: uint16 ids and the "rank-floor" probability codec.

Each position's k probabilities are sorted in decreasing order (ids follow), so the r-th (0-based)
is at most ``1 / (r + 1)`` whenever they sum to <= 1. Rank 0 gets 12 bits over [0, 1], every other
rank 9 bits over [0, 1 / (r + 1)], each rounded *down*::

    code_r = floor(p_r (2**b_r - 1) (r + 1) + 1e-3),    p_hat_r = code_r / ((2**b_r - 1) (r + 1))

Hence ``0 <= p_r - p_hat_r < step_r = 1 / ((r + 1) (2**b_r - 1))`` — at k = 5: 2.4e-4, 9.8e-4,
6.5e-4, 4.9e-4, 3.9e-4 — up to the 1e-3 guard, which makes decoded float32 values re-encode to the
same codes and lets a probability grow by under 1e-3 of a step (< 2.5e-7). So zeros stay zero and
the decoded k sum to no more than the true k (<= 1, to 1e-6): the "rest of the mass" ``1 - sum`` is
never negative. Codes are bit-packed (LSB first, rank after rank) into
``ceil((12 + 9 (k - 1)) / 8)`` bytes: 6 at k = 5. With uint16 ids a position costs ``3k + 1`` bytes
— 16 at k = 5, against 98,304 for a 49,152-token fp16 row.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "REST_BITS",
    "TOP_BITS",
    "bit_widths",
    "decode_probs",
    "encode_probs",
    "id_dtype_name",
    "payload_bytes_per_position",
    "prob_error_bound",
]

CODEC = "rank-floor"
_GUARD = 1e-3  # in code units: above float32 round-off of a decoded value (< 2.5e-4 units)
TOP_BITS, REST_BITS = 12, 9
ID_DTYPES = {"uint16": torch.uint16, "int32": torch.int32}


def bit_widths(k: int) -> list[int]:
    """Bits per rank: ``[12, 9, 9, ...]`` (k entries)."""
    return [TOP_BITS] + [REST_BITS] * (k - 1)


def _levels_and_ranges(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    levels = torch.tensor([2**b - 1 for b in bit_widths(k)], dtype=torch.float64)
    rank_max = 1.0 / torch.arange(1, k + 1, dtype=torch.float64)
    return levels, rank_max


def prob_error_bound(k: int) -> tuple[float, ...]:
    """Per-rank ``step_r``: ``0 <= p_r - decode(encode(p))_r < step_r`` (sorted rows, sum <= 1).

    >>> [round(s, 6) for s in prob_error_bound(3)]
    [0.000244, 0.000978, 0.000652]
    """
    return tuple(1.0 / ((r + 1) * (2**b - 1)) for r, b in enumerate(bit_widths(k)))


def id_dtype_name(vocab_size: int | None) -> str:
    """``"uint16"`` up to 65,536 tokens (or unknown), else ``"int32"``."""
    return "uint16" if vocab_size is None or vocab_size <= 2**16 else "int32"


def payload_bytes_per_position(k: int, vocab_size: int | None = None) -> int:
    """Bytes of ids plus packed probabilities per position.

    >>> payload_bytes_per_position(5, 49_152)
    16
    """
    id_bytes = 2 if id_dtype_name(vocab_size) == "uint16" else 4
    return id_bytes * k + math.ceil(sum(bit_widths(k)) / 8)


def encode_probs(probs: torch.Tensor) -> torch.Tensor:
    """Quantize rows sorted in decreasing order, ``(P, k)``, to packed codes ``(P, B)`` uint8.

    Values past a rank's range (only possible when a row is unsorted or sums past 1) are clipped.
    """
    n, k = probs.shape
    p = probs.detach().cpu().to(torch.float64)
    levels, rank_max = _levels_and_ranges(k)
    scaled = p / rank_max * levels + _GUARD  # the guard makes encode(decode(c)) == c in float32
    codes = torch.floor(scaled).clamp(min=0).minimum(levels).to(torch.int64)
    widths = bit_widths(k)
    bits = torch.cat(
        [(codes[:, r : r + 1] >> torch.arange(w)) & 1 for r, w in enumerate(widths)], dim=1
    ).to(torch.uint8)
    n_bytes = math.ceil(bits.shape[1] / 8)
    bits = torch.nn.functional.pad(bits, (0, 8 * n_bytes - bits.shape[1]))
    byte_weights = (1 << torch.arange(8)).to(torch.int32)
    return (bits.view(n, n_bytes, 8).to(torch.int32) * byte_weights).sum(-1).to(torch.uint8)


def decode_probs(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`encode_probs`: ``(P, B)`` uint8 to ``(P, k)`` float32 probabilities.

    >>> p = torch.tensor([[0.6, 0.3, 0.1]])
    >>> (p - decode_probs(encode_probs(p), 3)).abs().max().item() < 1e-3
    True
    """
    n = packed.shape[0]
    bits = (packed.to(torch.int32).unsqueeze(-1) >> torch.arange(8)) & 1
    bits = bits.reshape(n, packed.shape[1] * 8).to(torch.int64)
    codes, pos = [], 0
    for w in bit_widths(k):
        codes.append((bits[:, pos : pos + w] << torch.arange(w)).sum(-1))
        pos += w
    levels, rank_max = _levels_and_ranges(k)
    return (torch.stack(codes, dim=-1).to(torch.float64) / levels * rank_max).to(torch.float32)
