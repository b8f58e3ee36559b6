"""One binning, many metrics: per-bin statistics computed once, then final steps.

Top-label bins (``scheme="width"`` or ``"mass"``) feed ECE, MCE, RMS-CE, debiased ECE and the
reliability diagram; per-option equal-width bins feed classwise ECE and the Brier decomposition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from first_eval.calibration._checks import Forecasts

SCHEMES = ("width", "mass")


def check_binning(n_bins, scheme) -> None:
    """Validate ``n_bins`` (int >= 1) and ``scheme`` (``"width"`` or ``"mass"``)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"Expected n_bins as an integer >= 1, got {n_bins!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"Expected scheme 'width' or 'mass', got {scheme!r}")


def width_edges(n_bins: int) -> np.ndarray:
    """Edges ``i / n_bins`` of equal-width bins, shape (n_bins + 1,)."""
    return np.arange(n_bins + 1) / n_bins


def width_bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each value: bin i is [i/M, (i+1)/M), the last bin is closed.

    The edge i/M is the double nearest to it (``i / M``), lowered to ``np.linspace(0, 1, M + 1)[i]``
    where that is one ulp lower, so a value equal to either spelling of i/M lands in bin i
    (0.3 with 10 bins is in bin 3). Values >= 1 land in the last bin, never in an extra one.
    """
    interior = np.minimum(width_edges(n_bins), np.linspace(0.0, 1.0, n_bins + 1))[1:-1]
    return np.searchsorted(interior, values, side="right")


def confidence_order(f: Forecasts) -> np.ndarray:
    """Items sorted by confidence (ascending), ties wrong-before-right, otherwise stable.

    Ordering ties by correctness makes equal-mass bins independent of item order.
    """
    return np.lexsort((f.correct, f.confidence))


def mass_chunk_sizes(n: int, n_bins: int) -> np.ndarray:
    """Sizes of ``np.array_split(range(n), n_bins)``: the first ``n % n_bins`` get one more."""
    sizes = np.full(n_bins, n // n_bins, dtype=np.int64)
    sizes[: n % n_bins] += 1
    return sizes


@dataclass(frozen=True)
class BinStats:
    """Per-bin sums of the top-label view.

    Attributes
    ----------
    edges : ndarray of shape (n_bins + 1,)
        Bin edges. Equal-width: i / n_bins. Equal-mass: 0, the confidence of each chunk's first
        item (1.0 for an empty chunk), 1.
    counts, sum_confidence, sum_correct : ndarray of shape (n_bins,)
    n : int
        Number of items.
    """

    edges: np.ndarray
    counts: np.ndarray
    sum_confidence: np.ndarray
    sum_correct: np.ndarray
    n: int


def bin_statistics(f: Forecasts, *, n_bins: int, scheme: str) -> BinStats:
    """Bin the top-label confidences once; see :class:`BinStats`."""
    if scheme == "width":
        idx = width_bin_index(f.confidence, n_bins)
        edges = width_edges(n_bins)
    else:
        order = confidence_order(f)
        sizes = mass_chunk_sizes(f.n, n_bins)
        idx = np.empty(f.n, dtype=np.int64)
        idx[order] = np.repeat(np.arange(n_bins), sizes)
        starts = np.cumsum(sizes) - sizes
        first = f.confidence[order][np.minimum(starts, f.n - 1)]
        edges = np.concatenate([[0.0], np.where(sizes > 0, first, 1.0)[1:], [1.0]])
    counts = np.bincount(idx, minlength=n_bins).astype(np.float64)
    s_conf = np.bincount(idx, weights=f.confidence, minlength=n_bins)
    s_corr = np.bincount(idx, weights=f.correct, minlength=n_bins)
    return BinStats(edges, counts, s_conf, s_corr, f.n)


# --------------------------------------------------------------------------- final steps
# Each takes arrays of per-bin sums with bins on the LAST axis, so the bootstrap can pass
# (n_resamples, n_bins) arrays through the very same code.

def ece_from_sums(counts, s_conf, s_corr, n):
    """Count-weighted L1 gap: sum_b |sum_correct_b - sum_conf_b| / n."""
    return np.abs(s_corr - s_conf).sum(axis=-1) / n


def mce_from_sums(counts, s_conf, s_corr, n):
    """Largest |accuracy - confidence| over non-empty bins."""
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(counts > 0, np.abs(s_corr - s_conf) / counts, 0.0)
    return gap.max(axis=-1)


def rms_from_sums(counts, s_conf, s_corr, n):
    """sqrt(sum_b n_b (acc_b - conf_b)^2 / n): the plug-in L2 calibration error."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sq = np.where(counts > 0, (s_corr - s_conf) ** 2 / counts, 0.0)
    return np.sqrt(sq.sum(axis=-1) / n)


def debiased_from_sums(counts, s_conf, s_corr, n):
    """Kumar et al. (2019) debiased L2 calibration error.

    sqrt(max(0, sum_b (n_b/n) [(acc_b - conf_b)^2 - acc_b (1 - acc_b) / (n_b - 1)])). A bin
    with fewer than 2 items contributes 0 (its variance cannot be estimated), as in the
    reference ``unbiased_square_ce``; it never raises.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = counts >= 2
        acc = s_corr / np.where(ok, counts, 1.0)
        conf = s_conf / np.where(ok, counts, 1.0)
        term = (acc - conf) ** 2 - acc * (1.0 - acc) / np.where(ok, counts - 1.0, 1.0)
        sq = np.where(ok, counts * term, 0.0).sum(axis=-1) / n
    return np.sqrt(np.maximum(sq, 0.0))


# --------------------------------------------------------------------------- per-option bins
@dataclass(frozen=True)
class ClasswiseStats:
    """Per-(option, bin) sums over items for which the option is real.

    counts, sum_prob, sum_label : ndarray of shape (n_options, n_bins)
    n : int (all items)
    """

    counts: np.ndarray
    sum_prob: np.ndarray
    sum_label: np.ndarray
    n: int


def classwise_statistics(f: Forecasts, *, n_bins: int) -> ClasswiseStats:
    """Bin each option's probability into equal-width bins (same edge rule as top-label)."""
    n, k = f.probs.shape
    real = np.arange(k)[None, :] < f.n_options[:, None]
    onehot = np.zeros((n, k))
    onehot[np.arange(n), f.labels] = 1.0
    key = (np.arange(k)[None, :] * n_bins + width_bin_index(f.probs, n_bins))[real]
    size = k * n_bins
    counts = np.bincount(key, minlength=size).astype(np.float64).reshape(k, n_bins)
    s_p = np.bincount(key, weights=f.probs[real], minlength=size).reshape(k, n_bins)
    s_y = np.bincount(key, weights=onehot[real], minlength=size).reshape(k, n_bins)
    return ClasswiseStats(counts, s_p, s_y, n)


def classwise_ece_from_sums(counts, s_p, s_y):
    """Mean over real options k of sum_b |sum_label_kb - sum_prob_kb| / n_k (options on axis -2)."""
    n_k = counts.sum(axis=-1)
    real = n_k > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(real, np.abs(s_y - s_p).sum(axis=-1) / np.where(real, n_k, 1.0), 0.0)
    return per.sum(axis=-1) / real.sum(axis=-1)


def brier_parts_from_sums(counts, s_p, s_y, n):
    """Murphy's reliability, resolution, uncertainty summed over options (options on axis -2)."""
    n_k = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(counts > 0, counts, 1.0)
        rel = np.where(counts > 0, (s_p - s_y) ** 2 / safe, 0.0).sum(axis=(-2, -1)) / n
        base = s_y.sum(axis=-1, keepdims=True) / np.where(n_k > 0, n_k, 1.0)
        res = np.where(counts > 0, counts * (s_y / safe - base) ** 2, 0.0).sum(axis=(-2, -1)) / n
        unc = (n_k * base * (1.0 - base)).sum(axis=(-2, -1)) / n
    return rel, res, unc
