"""The full metric suite in one call, sharing one top-label binning and one per-option binning."""

from __future__ import annotations

import numpy as np

from first_eval.calibration import binning as _b
from first_eval.calibration import metrics as _m
from first_eval.calibration.smooth import smooth_ece_rows

#: Metric keys of :func:`metric_suite` (besides ``"n"``), in order.
METRIC_NAMES: tuple[str, ...] = (
    "accuracy", "ece", "mce", "rms_ce", "debiased_ece", "smooth_ece", "brier",
    "brier_reliability", "brier_resolution", "brier_uncertainty", "nll", "auroc", "aurc",
    "acc_at_80", "classwise_ece",
)

#: Which way is better for each metric: ``"higher"`` or ``"lower"``. ``brier_uncertainty``
#: describes the labels, not the model (``"neither"``).
METRIC_DIRECTION: dict[str, str] = {
    "accuracy": "higher", "ece": "lower", "mce": "lower", "rms_ce": "lower",
    "debiased_ece": "lower", "smooth_ece": "lower", "brier": "lower",
    "brier_reliability": "lower", "brier_resolution": "higher", "brier_uncertainty": "neither",
    "nll": "lower", "auroc": "higher", "aurc": "lower", "acc_at_80": "higher",
    "classwise_ece": "lower",
}

LOWER_IS_BETTER: frozenset[str] = frozenset(k for k, v in METRIC_DIRECTION.items() if v == "lower")
HIGHER_IS_BETTER: frozenset[str] = frozenset(k for k, v in METRIC_DIRECTION.items() if v == "higher")

#: Coverage of ``acc_at_80``.
COVERAGE = 0.8


def metric_suite(probs, labels, *, n_bins: int = 10, scheme: str = "width",
                 n_options=None) -> dict[str, float]:
    """Every metric of DESIGN.md "Measuring it" for one set of forecasts.

    Parameters
    ----------
    probs : array-like of shape (n_items, n_options)
    labels : array-like of shape (n_items,)
    n_bins : int, default=10
        Bins of ECE, MCE, RMS-CE, debiased ECE, classwise ECE and the Brier decomposition.
    scheme : {"width", "mass"}, default="width"
        Top-label binning of ECE, MCE, RMS-CE and debiased ECE. Classwise ECE and the Brier
        decomposition always bin each option's probability with equal widths.
    n_options : array-like of shape (n_items,), optional
        Real option count per row for zero-padded ragged data (classwise ECE and the Brier
        decomposition leave padded columns out; no other metric is affected by padding).

    Returns
    -------
    dict
        ``"n"`` (int) then :data:`METRIC_NAMES` (floats) in that order: ``accuracy``;
        ``ece``, ``mce``, ``rms_ce``, ``debiased_ece`` (top-label, binned); ``smooth_ece``;
        ``brier`` and its ``brier_reliability``, ``brier_resolution``, ``brier_uncertainty``;
        ``nll``; ``auroc`` (NaN when all answers are right or all wrong); ``aurc``;
        ``acc_at_80`` (accuracy of the 80% most confident); ``classwise_ece``.

    Examples
    --------
    >>> s = metric_suite([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]], [0, 1, 1], n_bins=10)
    >>> s["n"], round(s["accuracy"], 4), round(s["ece"], 4)
    (3, 0.6667, 0.3333)
    """
    f = _m._prepared(probs, labels, n_bins, scheme, n_options)
    top = _b.bin_statistics(f, n_bins=n_bins, scheme=scheme)
    sums = (top.counts, top.sum_confidence, top.sum_correct, top.n)
    per_option = _b.classwise_statistics(f, n_bins=n_bins)
    cw = (per_option.counts, per_option.sum_prob, per_option.sum_label)
    rel, res, unc = _b.brier_parts_from_sums(*cw, per_option.n)
    c = f.confidence
    out = {
        "n": f.n,
        "accuracy": f.correct.mean(),
        "ece": _b.ece_from_sums(*sums),
        "mce": _b.mce_from_sums(*sums),
        "rms_ce": _b.rms_from_sums(*sums),
        "debiased_ece": _b.debiased_from_sums(*sums),
        "smooth_ece": smooth_ece_rows(c, c - f.correct, np.ones((1, f.n)))[0],
        "brier": _m._brier_items(f).mean(),
        "brier_reliability": rel,
        "brier_resolution": res,
        "brier_uncertainty": unc,
        "nll": _m._nll_items(f).mean(),
        "auroc": _m._auroc(f),
        "aurc": _m._aurc(f),
        "acc_at_80": _m._accuracy_at_coverage(f, COVERAGE),
        "classwise_ece": _b.classwise_ece_from_sums(*cw),
    }
    return {k: (v if k == "n" else float(v)) for k, v in out.items()}
