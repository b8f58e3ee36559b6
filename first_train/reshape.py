"""Trustworthy maximization: re-shape the teacher's top-k, pick the temperature by ECE grid search.

DESIGN.md step 3. The stored top-k *probabilities* ``p_i`` are re-shaped with a temperature ``c``::

    p'_i = exp(p_i / c) / sum_j exp(p_j / c)        (over the k tokens)

and ``c`` is chosen by a two-stage grid search minimizing the teacher's ECE on a validation split:
coarse 0.1 steps over (0, 1], then 0.02 steps within +-0.1 of the coarse best. Ordinary temperature
scaling of *log*-probabilities (:func:`temperature_logprobs`) is the second method.

These are pure functions: the ECE of a candidate comes from a callback, so this module knows nothing
about models, datasets or the store. Works on torch tensors and on NumPy arrays alike.

References
----------
.. [1] K. Shum, M. Xu, J. Zhang, Z. Chen, S. Diao, H. Dong, J. Zhang and M. O. Raza, "FIRST: Teach
   A Reliable Large Language Model Through Efficient Trustworthy Distillation", EMNLP 2024,
   arXiv:2408.12168, section 3.3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = [
    "COARSE_C_GRID",
    "GridResult",
    "grid_search_c",
    "reshape_topk",
    "temperature_logprobs",
    "two_stage_grid_search",
]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)

#: DESIGN.md's coarse grid: 0.1 steps over (0, 1].
COARSE_C_GRID: tuple[float, ...] = tuple(round(0.1 * i, 10) for i in range(1, 11))
_DECIMALS = 10  # grid points are rounded so that 0.1 * 3 and 0.3 are the same candidate


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"Expected {name} > 0 (finite), got {value!r}")
    return float(value)


def reshape_topk(probs: ArrayT, c: float) -> ArrayT:
    """FIRST re-shaping: ``softmax(probs / c)`` over the last axis (the k stored tokens).

    Parameters
    ----------
    probs : Tensor or ndarray of shape (..., k)
        Top-k probabilities (as stored; need not sum to 1).
    c : float
        Temperature, ``c > 0``. Smaller ``c`` sharpens; ``c -> inf`` tends to uniform.

    Returns
    -------
    Same type and shape as ``probs``; each row sums to 1.

    Examples
    --------
    >>> reshape_topk(np.array([0.9, 0.1]), 0.5).round(4).tolist()
    [0.832, 0.168]
    """
    c = _check_positive("c", c)
    if isinstance(probs, torch.Tensor):
        x = probs if probs.is_floating_point() else probs.double()
        return torch.softmax(x / c, dim=-1)
    x = np.asarray(probs, dtype=np.float64) / c
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def temperature_logprobs(logprobs: ArrayT, temperature: float) -> ArrayT:
    """Ordinary temperature scaling: ``log_softmax(logprobs / T)`` over the last axis.

    Parameters
    ----------
    logprobs : Tensor or ndarray of shape (..., n)
        Log-probabilities (or logits) over the last axis; ``-inf`` entries stay ``-inf``.
    temperature : float
        ``T > 0``; ``T > 1`` softens an over-confident model.

    Returns
    -------
    Same type and shape: normalized log-probabilities.

    Examples
    --------
    >>> np.exp(temperature_logprobs(np.log([0.8, 0.2]), 2.0)).round(4).tolist()
    [0.6667, 0.3333]
    """
    t = _check_positive("temperature", temperature)
    if isinstance(logprobs, torch.Tensor):
        x = logprobs if logprobs.is_floating_point() else logprobs.double()
        return torch.log_softmax(x / t, dim=-1)
    x = np.asarray(logprobs, dtype=np.float64) / t
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


@dataclass(frozen=True)
class GridResult:
    """Outcome of a temperature grid search.

    Attributes
    ----------
    best_c : float or None
        The chosen temperature; ``None`` when no candidate beat the un-reshaped baseline (then
        re-shaping would raise validation ECE, so none is applied).
    best_ece : float
        ECE at ``best_c`` (the baseline's when ``best_c is None``); <= every evaluated ECE.
    ece_before : float or None
        ECE without re-shaping (``ece_fn(None)``), when the baseline was evaluated.
    grid : tuple of (c, ece)
        Every evaluated candidate in evaluation order (coarse, then fine), without the baseline.
    """

    best_c: float | None
    best_ece: float
    ece_before: float | None
    grid: tuple[tuple[float, float], ...]

    def as_calibration(self, method: str) -> dict[str, Any]:
        """The manifest's ``calibration`` record (``temperature`` is ``best_c``)."""
        return {
            "method": method,
            "temperature": self.best_c,
            "ece_before": self.ece_before,
            "ece_after": self.best_ece,
            "grid": [[c, e] for c, e in self.grid],
        }


def _evaluate(ece_fn: Callable[[float | None], float], c: float | None) -> float:
    value = ece_fn(c)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Expected ece_fn({c!r}) to return a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"Expected a finite ECE from ece_fn({c!r}), got {value!r}")
    return value


def two_stage_grid_search(
    ece_fn: Callable[[float | None], float],
    coarse: Sequence[float],
    *,
    fine_step: float,
    fine_radius: float,
    baseline: bool = True,
) -> GridResult:
    """Minimize ``ece_fn`` over a coarse grid, then a fine grid around the coarse best.

    The fine grid is ``best + i * fine_step`` for ``|i * fine_step| <= fine_radius``, excluding
    values <= 0 and candidates already evaluated. Ties go to the smallest temperature (the first
    minimum in sorted order), so the result is deterministic for a deterministic ``ece_fn``.

    Parameters
    ----------
    ece_fn : callable ``float | None -> float``
        ECE (lower is better) of the teacher re-shaped with a temperature; called with ``None`` for
        the un-reshaped baseline when ``baseline=True``.
    coarse : sequence of float
        Coarse candidates (> 0).
    fine_step, fine_radius : float
        Fine grid spacing and half-width.
    baseline : bool, default=True
        Evaluate ``ece_fn(None)``. The result then never has a higher ECE than the baseline: if no
        candidate is strictly better, ``best_c`` is ``None``.

    Returns
    -------
    GridResult
    """
    if not coarse:
        raise ValueError("Expected at least one coarse candidate, got none")
    coarse = [round(_check_positive("coarse candidate", c), _DECIMALS) for c in coarse]
    fine_step = _check_positive("fine_step", fine_step)
    if isinstance(fine_radius, bool) or not 0 <= fine_radius < math.inf:
        raise ValueError(f"Expected fine_radius >= 0, got {fine_radius!r}")

    seen: dict[float, float] = {}
    order: list[float] = []

    def visit(cs: Sequence[float]) -> None:
        for c in cs:
            if c not in seen:
                seen[c] = _evaluate(ece_fn, c)
                order.append(c)

    def best() -> float:
        return min(sorted(seen), key=lambda c: seen[c])  # min is stable: ties -> smallest c

    visit(coarse)
    centre = best()
    n = int(math.floor(fine_radius / fine_step + 1e-9))
    fine = [round(centre + i * fine_step, _DECIMALS) for i in range(-n, n + 1)]
    visit([c for c in fine if c > 0])
    best_c: float | None = best()
    best_ece = seen[best_c]

    ece_before = _evaluate(ece_fn, None) if baseline else None
    if ece_before is not None and ece_before <= best_ece:
        best_c, best_ece = None, ece_before
    return GridResult(
        best_c=best_c,
        best_ece=best_ece,
        ece_before=ece_before,
        grid=tuple((c, seen[c]) for c in order),
    )


def grid_search_c(
    ece_fn: Callable[[float | None], float],
    *,
    coarse: Sequence[float] = COARSE_C_GRID,
    fine_step: float = 0.02,
    fine_radius: float = 0.1,
    baseline: bool = True,
) -> GridResult:
    """DESIGN.md's search for the FIRST re-shaping temperature ``c``.

    Coarse: 0.1, 0.2, ..., 1.0; fine: 0.02 steps within +-0.1 of the coarse best (values <= 0
    dropped). Ties go to the smallest ``c``; see :func:`two_stage_grid_search`.

    Examples
    --------
    >>> r = grid_search_c(lambda c: 0.05 if c is None else abs(c - 0.365), baseline=True)
    >>> r.best_c, round(r.best_ece, 4), len(r.grid)
    (0.36, 0.005, 18)
    """
    return two_stage_grid_search(
        ece_fn, coarse, fine_step=fine_step, fine_radius=fine_radius, baseline=baseline
    )
