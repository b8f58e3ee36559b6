"""Calibration core: pure-NumPy metrics of multiple-choice forecasts (DESIGN.md "Measuring it").

Inputs everywhere: ``probs`` array-like of shape (n_items, n_options), rows summing to 1 (ragged
option counts zero-padded; pass ``n_options`` where a metric needs to know which columns are
real), and ``labels`` int of shape (n_items,). Confidence = the top option probability,
prediction = its argmax (ties to the lowest index); two options are scored top-label too.

Importing this package never imports torch, transformers or netcal. Bootstrap CIs live in
:mod:`first_eval.bootstrap`; figures in :mod:`first_eval.plots`.

Modules: :mod:`._checks` (the one validation door, with :data:`SUM_TOLERANCE` and
:data:`PROB_FLOOR`), :mod:`.binning` (per-bin statistics and the final steps shared with the
bootstrap), :mod:`.metrics` (one function per metric), :mod:`.smooth` (smooth ECE),
:mod:`.reliability` (diagram data), :mod:`.suite` (all at once), :mod:`.resampled` (every
metric for many resample weight vectors at once).
"""

from first_eval.calibration._checks import PROB_FLOOR, SUM_TOLERANCE
from first_eval.calibration.metrics import (
    BrierDecomposition,
    accuracy_at_coverage,
    accuracy_score,
    area_under_risk_coverage,
    brier_decomposition,
    brier_loss,
    classwise_calibration_error,
    confidence_auroc_score,
    debiased_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    nll_loss,
    rms_calibration_error,
    smooth_calibration_error,
)
from first_eval.calibration.reliability import ReliabilityData, reliability_diagram, wilson_interval
from first_eval.calibration.suite import (
    COVERAGE,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    METRIC_DIRECTION,
    METRIC_NAMES,
    metric_suite,
)

__all__ = [
    "BrierDecomposition", "COVERAGE", "HIGHER_IS_BETTER", "LOWER_IS_BETTER", "METRIC_DIRECTION",
    "METRIC_NAMES", "PROB_FLOOR", "ReliabilityData", "SUM_TOLERANCE", "accuracy_at_coverage",
    "accuracy_score", "area_under_risk_coverage", "brier_decomposition", "brier_loss", "classwise_calibration_error",
    "confidence_auroc_score", "debiased_calibration_error", "expected_calibration_error",
    "maximum_calibration_error", "metric_suite", "nll_loss", "reliability_diagram",
    "rms_calibration_error", "smooth_calibration_error", "wilson_interval",
]
