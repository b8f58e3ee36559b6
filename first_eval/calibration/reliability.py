"""Reliability-diagram data: the first phase of a two-phase plot (drawn by first_eval.plots)."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from first_eval.calibration import binning as _b
from first_eval.calibration._checks import check_forecasts


@dataclass(frozen=True)
class ReliabilityData:
    """Per-bin top-label statistics for a reliability diagram (arrays are read-only).

    Attributes
    ----------
    edges : ndarray of shape (n_bins + 1,)
        Bin edges (see :class:`first_eval.calibration.binning.BinStats`).
    counts : ndarray of shape (n_bins,)
        Items per bin.
    mean_confidence, accuracy : ndarray of shape (n_bins,)
        Per-bin means; NaN for an empty bin.
    ci_low, ci_high : ndarray of shape (n_bins,)
        Wilson score interval for each bin's accuracy at ``level``; NaN for an empty bin.
    scheme : str
    level : float
    n : int
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    scheme: str
    level: float
    n: int

    def __post_init__(self):
        for name in ("edges", "counts", "mean_confidence", "accuracy", "ci_low", "ci_high"):
            getattr(self, name).setflags(write=False)

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[0])

    @property
    def gap(self) -> np.ndarray:
        """mean_confidence - accuracy per bin (positive = over-confident)."""
        return self.mean_confidence - self.accuracy


def wilson_interval(successes, trials, *, level: float = 0.95):
    """Wilson score interval for a binomial proportion; NaN where ``trials == 0``.

    Parameters
    ----------
    successes, trials : array-like of the same shape
    level : float, default=0.95

    Returns
    -------
    (low, high) : tuple of ndarray

    Examples
    --------
    >>> [round(float(x), 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        center = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        low = np.where(n > 0, np.clip(center - half, 0.0, 1.0), np.nan)
        high = np.where(n > 0, np.clip(center + half, 0.0, 1.0), np.nan)
    return low, high


def reliability_diagram(probs, labels, *, n_bins: int = 10, scheme: str = "width",
                        level: float = 0.95) -> ReliabilityData:
    """Per-bin counts, mean confidence, accuracy and accuracy interval, for plotting.

    Parameters
    ----------
    probs : array-like of shape (n_items, n_options)
    labels : array-like of shape (n_items,)
    n_bins : int, default=10
    scheme : {"width", "mass"}, default="width"
        The same binning as :func:`expected_calibration_error`.
    level : float, default=0.95
        Confidence level of the Wilson interval.

    Returns
    -------
    ReliabilityData

    Examples
    --------
    >>> d = reliability_diagram([[0.9, 0.1], [0.8, 0.2]], [0, 1], n_bins=5)
    >>> d.counts.tolist(), d.accuracy[-1].item()
    ([0.0, 0.0, 0.0, 0.0, 2.0], 0.5)
    """
    _b.check_binning(n_bins, scheme)
    if not (isinstance(level, (float, int)) and 0 < level < 1):
        raise ValueError(f"Expected level in (0, 1), got {level!r}")
    s = _b.bin_statistics(check_forecasts(probs, labels), n_bins=n_bins, scheme=scheme)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(s.counts > 0, s.sum_confidence / s.counts, np.nan)
        acc = np.where(s.counts > 0, s.sum_correct / s.counts, np.nan)
    low, high = wilson_interval(s.sum_correct, s.counts, level=level)
    return ReliabilityData(s.edges.copy(), s.counts, conf, acc, low, high, scheme, float(level), s.n)
