"""Calibration and selective-prediction metrics: pure functions of (probs, labels) arrays.

Conventions (DESIGN.md, "Measuring it"): ``probs`` is array-like of shape (n_items, n_options)
whose rows sum to 1 (ragged option counts zero-padded by the caller), ``labels`` is int of shape
(n_items,). Confidence is the top option probability, the prediction its argmax (ties go to the
lowest index). Two options are scored top-label too, like any other count. Each function
validates its inputs once and raises ``ValueError("Expected ..., got ...")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from first_eval.calibration import binning as _b
from first_eval.calibration._checks import PROB_FLOOR, Forecasts, check_forecasts
from first_eval.calibration.smooth import smooth_ece_rows


def _prepared(probs, labels, n_bins=None, scheme="width", n_options=None) -> Forecasts:
    if n_bins is not None:
        _b.check_binning(n_bins, scheme)
    return check_forecasts(probs, labels, n_options)


def accuracy_score(probs, labels) -> float:
    """Fraction of items whose argmax option is the label.

    Parameters
    ----------
    probs : array-like of shape (n_items, n_options)
    labels : array-like of shape (n_items,)

    Returns
    -------
    float

    Examples
    --------
    >>> accuracy_score([[0.6, 0.4], [0.5, 0.5]], [0, 1])
    0.5
    """
    return float(_prepared(probs, labels).correct.mean())


def _binned(probs, labels, n_bins, scheme, final) -> float:
    f = _prepared(probs, labels, n_bins, scheme)
    s = _b.bin_statistics(f, n_bins=n_bins, scheme=scheme)
    return float(final(s.counts, s.sum_confidence, s.sum_correct, s.n))


def expected_calibration_error(probs, labels, *, n_bins: int = 10, scheme: str = "width") -> float:
    """Top-label ECE: sum over bins of (n_b / n) |accuracy_b - confidence_b|.

    Parameters
    ----------
    probs : array-like of shape (n_items, n_options)
    labels : array-like of shape (n_items,)
    n_bins : int, default=10
    scheme : {"width", "mass"}, default="width"
        ``"width"``: bin i is [i/M, (i+1)/M), the last bin closed (0.3 with 10 bins is in
        [0.3, 0.4); 1.0 is in the last bin). ``"mass"``: items sorted by confidence (ties
        wrong-before-right, otherwise stable) and split like ``np.array_split`` into M chunks.

    Returns
    -------
    float

    References
    ----------
    Naeini, Cooper & Hauskrecht (2015); Guo et al., "On Calibration of Modern Neural Networks" (2017).

    Examples
    --------
    >>> round(expected_calibration_error([[0.9, 0.1], [0.8, 0.2]], [0, 1], n_bins=10), 4)
    0.45
    """
    return _binned(probs, labels, n_bins, scheme, _b.ece_from_sums)


def maximum_calibration_error(probs, labels, *, n_bins: int = 10, scheme: str = "width") -> float:
    """MCE: the largest |accuracy_b - confidence_b| over non-empty bins (options as ECE)."""
    return _binned(probs, labels, n_bins, scheme, _b.mce_from_sums)


def rms_calibration_error(probs, labels, *, n_bins: int = 10, scheme: str = "width") -> float:
    """RMS-CE: sqrt(sum_b (n_b / n) (accuracy_b - confidence_b)^2), the plug-in L2 error."""
    return _binned(probs, labels, n_bins, scheme, _b.rms_from_sums)


def debiased_calibration_error(probs, labels, *, n_bins: int = 10, scheme: str = "width") -> float:
    """Debiased L2 calibration error (the bias-corrected counterpart of RMS-CE).

    sqrt(max(0, sum_b (n_b/n) [(acc_b - conf_b)^2 - acc_b (1 - acc_b) / (n_b - 1)])): the
    plug-in squared gap overstates calibration error by the binomial variance of acc_b, which is
    subtracted with its unbiased estimate. Bins with fewer than 2 items contribute 0 (as in the
    reference implementation's ``unbiased_square_ce``) instead of raising; a negative total is
    clipped to 0.

    References
    ----------
    Kumar, Liang & Ma, "Verified Uncertainty Calibration", NeurIPS 2019.
    """
    return _binned(probs, labels, n_bins, scheme, _b.debiased_from_sums)


def smooth_calibration_error(probs, labels) -> float:
    """Smooth ECE with its automatic bandwidth: relplot's ``smECE(confidence, correct)``.

    Kernel-smoothed (reflected Gaussian) top-label residuals, with the bandwidth sigma chosen
    as the fixed point sigma = smECE_sigma by bisection. Computed here with a batched FFT; it
    equals ``relplot.smECE`` to ~1e-12 (see :mod:`first_eval.calibration.smooth`).

    References
    ----------
    Błasiok & Nakkiran, "Smooth ECE: Principled Reliability Diagrams via Kernel Smoothing", 2023.
    """
    f = _prepared(probs, labels)
    c = f.confidence
    return float(smooth_ece_rows(c, c - f.correct, np.ones((1, f.n)))[0])


def brier_loss(probs, labels) -> float:
    """Multi-class Brier score: mean over items of sum_k (p_k - y_k)^2 (0 best, 2 worst).

    Zero-padded columns add nothing. For two options this is twice scikit-learn's binary
    ``brier_score_loss`` (which scores the positive class only).

    References
    ----------
    Brier, "Verification of forecasts expressed in terms of probability" (1950).

    Examples
    --------
    >>> brier_loss([[1.0, 0.0], [0.5, 0.5]], [0, 0])
    0.25
    """
    f = _prepared(probs, labels)
    return float(_brier_items(f).mean())


def _brier_items(f: Forecasts) -> np.ndarray:
    p_true = f.probs[np.arange(f.n), f.labels]
    return (f.probs**2).sum(axis=1) - 2 * p_true + 1.0


def _nll_items(f: Forecasts) -> np.ndarray:
    return -np.log(np.clip(f.probs[np.arange(f.n), f.labels], PROB_FLOOR, 1.0))


@dataclass(frozen=True)
class BrierDecomposition:
    """Murphy's partition, summed over options: ``brier ~= reliability - resolution + uncertainty``."""

    reliability: float
    resolution: float
    uncertainty: float


def brier_decomposition(probs, labels, *, n_bins: int = 10, n_options=None) -> BrierDecomposition:
    """Reliability, resolution and uncertainty of the Brier score (Murphy 1973).

    The multi-class Brier score is a sum over options k of binary Brier scores; each is
    partitioned with ``n_bins`` equal-width bins of p_k (the same edges as ECE), over the items
    for which option k is real::

        reliability = (1/n) sum_k sum_b n_kb (mean p_kb - mean y_kb)^2
        resolution  = (1/n) sum_k sum_b n_kb (mean y_kb - mean y_k)^2
        uncertainty = (1/n) sum_k n_k mean y_k (1 - mean y_k)

    ``reliability - resolution + uncertainty`` equals :func:`brier_loss` exactly when every bin
    holds a single forecast value; otherwise they differ by the within-bin variance terms
    (Stephenson et al. 2008). The binning is always equal-width, whatever the ECE scheme.

    Parameters
    ----------
    probs : array-like of shape (n_items, n_options)
    labels : array-like of shape (n_items,)
    n_bins : int, default=10
    n_options : array-like of shape (n_items,), optional
        Real option count per row; padded columns are left out of their option's bins.

    Returns
    -------
    BrierDecomposition
    """
    f = _prepared(probs, labels, n_bins, "width", n_options)
    s = _b.classwise_statistics(f, n_bins=n_bins)
    rel, res, unc = _b.brier_parts_from_sums(s.counts, s.sum_prob, s.sum_label, s.n)
    return BrierDecomposition(float(rel), float(res), float(unc))


def nll_loss(probs, labels) -> float:
    """Negative log-likelihood of the label: mean of -ln(max(p_label, 1e-12)).

    Examples
    --------
    >>> round(nll_loss([[0.5, 0.5]], [1]), 6)
    0.693147
    """
    return float(_nll_items(_prepared(probs, labels)).mean())


def _groups(conf: np.ndarray, correct: np.ndarray):
    """Sort ascending by confidence; per distinct confidence: (correct count, wrong count)."""
    order = np.argsort(conf, kind="stable")
    c, a = conf[order], correct[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    pos = np.add.reduceat(a, starts)
    neg = np.add.reduceat(1.0 - a, starts)
    return pos, neg


def confidence_auroc_score(probs, labels) -> float:
    """AUROC of confidence for telling correct from wrong answers (0.5 = chance, 1 best).

    P(conf of a random correct item > conf of a random wrong one) + 0.5 P(equal): ties count
    half. Undefined, returned as NaN, when every answer is correct or every answer is wrong.

    Examples
    --------
    >>> confidence_auroc_score([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4]], [0, 0, 1])
    0.75
    """
    return _auroc(_prepared(probs, labels))


def _auroc(f: Forecasts) -> float:
    pos, neg = _groups(f.confidence, f.correct)
    if pos.sum() == 0 or neg.sum() == 0:
        return float("nan")
    before = np.cumsum(neg) - neg
    return float((pos * (before + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def _position_error_rate(f: Forecasts) -> np.ndarray:
    """Error rate at each position of the most-confident-first ranking, ties shared evenly."""
    pos, neg = _groups(f.confidence, f.correct)
    m = pos + neg
    return np.repeat((neg / m)[::-1], m.astype(np.int64)[::-1])


def area_under_risk_coverage(probs, labels) -> float:
    """AURC: mean over coverages j/n (j = 1..n) of the error rate of the j most confident items.

    Items tied in confidence are ranked in expectation over their orderings (each position in
    a tie block carries the block's error rate), so the value does not depend on item order.
    Lower is better; an oracle ranking gives the minimum for the given accuracy.

    References
    ----------
    Geifman, Uziel & El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep Neural
    Classifiers", ICLR 2019.

    Examples
    --------
    >>> area_under_risk_coverage([[0.9, 0.1], [0.6, 0.4]], [0, 1])
    0.25
    """
    return _aurc(_prepared(probs, labels))


def _aurc(f: Forecasts) -> float:
    err = _position_error_rate(f)
    return float((np.cumsum(err) / np.arange(1, err.shape[0] + 1)).mean())


def accuracy_at_coverage(probs, labels, *, coverage: float = 0.8) -> float:
    """Accuracy of the ``coverage * n`` most confident items (selective accuracy).

    ``coverage * n`` need not be whole: the boundary item counts fractionally, and tie blocks
    share their accuracy evenly, so ``coverage=1`` gives the accuracy.

    Examples
    --------
    >>> accuracy_at_coverage([[0.9, 0.1], [0.6, 0.4]], [0, 1], coverage=0.5)
    1.0
    """
    if not (isinstance(coverage, (int, float, np.floating)) and 0 < coverage <= 1):
        raise ValueError(f"Expected coverage in (0, 1], got {coverage!r}")
    return _accuracy_at_coverage(_prepared(probs, labels), coverage)


def _accuracy_at_coverage(f: Forecasts, coverage: float) -> float:
    good = np.concatenate([[0.0], np.cumsum(1.0 - _position_error_rate(f))])
    target = coverage * f.n
    return float(np.interp(target, np.arange(f.n + 1), good) / target)


def classwise_calibration_error(probs, labels, *, n_bins: int = 10, n_options=None) -> float:
    """Classwise ECE: mean over options of each option's binned calibration error.

    For option k, its probabilities p_k are put into ``n_bins`` equal-width bins over the n_k
    items where k is a real option, and ECE_k = sum_b (n_kb / n_k) |mean y_kb - mean p_kb|.
    The result averages ECE_k over options that are real for at least one item. Zero-padded
    columns count as real unless ``n_options`` says otherwise — pass it for ragged data.

    Parameters
    ----------
    probs : array-like of shape (n_items, n_options)
    labels : array-like of shape (n_items,)
    n_bins : int, default=10
    n_options : array-like of shape (n_items,), optional

    References
    ----------
    Kull et al., "Beyond temperature scaling", NeurIPS 2019; Nixon et al., "Measuring
    Calibration in Deep Learning" (static calibration error), CVPR-W 2019.
    """
    f = _prepared(probs, labels, n_bins, "width", n_options)
    s = _b.classwise_statistics(f, n_bins=n_bins)
    return float(_b.classwise_ece_from_sums(s.counts, s.sum_prob, s.sum_label))
