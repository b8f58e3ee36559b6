"""Post-hoc calibrators for multiple-choice option probabilities, evaluated out of sample.

Three calibrators share one interface, ``fit(probs, labels) -> self`` and
``transform(probs) -> probs``, and are listed by name in :data:`CALIBRATORS`:

- :class:`TemperatureScaling` (``"temperature"``) divides the log-probabilities by one
  fitted temperature (Guo et al., 2017);
- :class:`HistogramBinning` (``"histogram"``) and :class:`IsotonicCalibration`
  (``"isotonic"``) recalibrate the top-label confidence (Zadrozny & Elkan, 2001, 2002).

:func:`cross_fit` fits a calibrator with k-fold cross-fitting, so that every item's calibrated
probabilities come from a calibrator that never saw that item: the honest "ECE after
calibration".

Conventions, shared by every calibrator here:

- ``probs`` is an array of shape (n_items, n_options) whose rows sum to 1. Items with fewer
  options are zero-padded on the right. **An option with probability exactly 0 is treated as
  absent**: it stays at exactly 0 after every transform (padding cannot be told apart from a
  real option the model gave exactly 0).
- Inputs go through the metrics' own door, :func:`first_eval.calibration._checks.check_forecasts`
  (``check_probs`` where there are no labels): the same rules, tolerance and ``UserError``
  messages as every metric. ``fit`` and :func:`cross_fit` take an optional ``n_options``.
- The prediction is the argmax (ties -> lowest index); the confidence is its probability.
  No calibrator here changes the prediction.
- Top-label recalibration (histogram, isotonic) maps the confidence ``c`` to ``c'`` and rescales
  the other options by ``(1 - c') / (1 - c)``, so their ratios are kept and the row still sums
  to 1. ``c'`` is floored just above the point where the runner-up would overtake the top
  option, so the argmax never changes. A row whose whole mass is on one option has nowhere to
  move mass to and is returned unchanged.

This module is pure NumPy/SciPy; scikit-learn is imported only when an isotonic calibrator is
fitted, and neither netcal nor torch is imported. netcal 1.4.0's ``HistogramBinning`` is not
used: it bins confidences into ``[a, b)`` when fitting but into ``(a, b]`` when transforming,
so a confidence on a bin edge is calibrated with the neighbouring bin's accuracy (see
``tests/first_eval/test_calibrators.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from first_eval.calibration._checks import PROB_FLOOR, check_forecasts, check_probs
from first_eval.errors import UserError

__all__ = [
    "CALIBRATORS",
    "Calibrator",
    "CrossFitResult",
    "HistogramBinning",
    "IsotonicCalibration",
    "TemperatureScaling",
    "cross_fit",
]

_ARGMAX_MARGIN = 1e-12  # keeps the top option strictly above the runner-up after rescaling


class Calibrator(Protocol):
    """What :func:`cross_fit` needs from a calibrator."""

    def fit(self, probs: Any, labels: Any) -> Calibrator: ...

    def transform(self, probs: Any) -> np.ndarray: ...


def _top_label(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    top = p.argmax(axis=1)  # ties -> lowest index
    return top, p[np.arange(p.shape[0]), top]


def _rescale_top_label(p: np.ndarray, new_conf: np.ndarray) -> np.ndarray:
    """Set each row's top probability to ``new_conf`` and rescale the others proportionally."""
    n = p.shape[0]
    top, conf = _top_label(p)
    others = p.copy()
    others[np.arange(n), top] = 0.0
    rest = others.sum(axis=1)  # mass on the other options (summed directly, not 1 - c)
    runner_up = others.max(axis=1)
    movable = rest > 0
    safe_rest = np.where(movable, rest, 1.0)
    # At c' = tie the rescaled runner-up, runner_up * (1 - c') / rest, equals c'.
    tie = np.where(movable, runner_up / (safe_rest + runner_up), conf)
    floor = np.minimum(tie + _ARGMAX_MARGIN, conf)  # never forces c' above c
    c_new = np.where(movable, np.clip(new_conf, floor, 1.0), conf)
    # others / rest first: stays finite even when rest is subnormal.
    out = others / safe_rest[:, None] * np.where(movable, 1.0 - c_new, 0.0)[:, None]
    out[np.arange(n), top] = c_new
    return out


# --------------------------------------------------------------------------- calibrators
class TemperatureScaling:
    """Temperature scaling of option log-probabilities.

    ``transform(p) = softmax(log p / T)`` over the options with non-zero probability; one
    temperature ``T > 0`` is fitted by minimizing the mean negative log-likelihood with bounded
    Brent search on ``log T`` (deterministic). The NLL is convex in ``1 / T``, so the search
    finds the global minimum within ``bounds``. Options with probability 0 (padding) are left out
    of the softmax when fitting and stay at 0 when transforming; a gold option with probability 0
    enters the fit at ``log(1e-12)``.

    Parameters
    ----------
    bounds : tuple of float, default=(0.01, 100.0)
        Search interval for ``T``.
    xatol : float, default=1e-7
        Absolute tolerance on ``log T``.

    Attributes
    ----------
    temperature_ : float
        The fitted temperature; ``T > 1`` softens an over-confident model.
    nll_ : float
        Mean negative log-likelihood (natural log) at ``temperature_`` on the fitting data.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern Neural
       Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> p = [[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.8, 0.2]]
    >>> ts = TemperatureScaling().fit(p, [0, 1, 1, 0])
    >>> bool(ts.temperature_ > 1.0)
    True
    >>> ts.transform([[0.5, 0.3, 0.2, 0.0]])[0, 3]
    np.float64(0.0)
    """

    def __init__(self, *, bounds: tuple[float, float] = (0.01, 100.0), xatol: float = 1e-7):
        if not (0 < bounds[0] < bounds[1] < np.inf):
            raise UserError(f"Expected 0 < bounds[0] < bounds[1] < inf, got {bounds}")
        self.bounds = bounds
        self.xatol = xatol

    @staticmethod
    def _log_probs(p: np.ndarray, support: np.ndarray) -> np.ndarray:
        return np.where(support, np.log(np.maximum(p, PROB_FLOOR)), -np.inf)

    @staticmethod
    def _nll(p: np.ndarray, y: np.ndarray, temperature: float) -> float:
        rows = np.arange(p.shape[0])
        support = p > 0
        support[rows, y] = True
        s = TemperatureScaling._log_probs(p, support) / temperature
        return float(np.mean(logsumexp(s, axis=1) - s[rows, y]))

    def fit(self, probs: Any, labels: Any, *, n_options: Any = None) -> TemperatureScaling:
        """Fit the temperature.

        Parameters
        ----------
        probs : array-like of shape (n_items, n_options)
        labels : array-like of shape (n_items,)
        n_options : array-like of shape (n_items,), optional
            Real option count of each row (checked: zero padding beyond it, labels below it).

        Returns
        -------
        self
        """
        f = check_forecasts(probs, labels, n_options)
        p, y = f.probs, f.labels
        support = p > 0
        support[np.arange(p.shape[0]), y] = True
        if not (support.sum(axis=1) > 1).any():  # every row certain: the NLL does not depend on T
            self.temperature_ = 1.0
        else:
            res = minimize_scalar(
                lambda log_t: self._nll(p, y, float(np.exp(log_t))),
                bounds=(np.log(self.bounds[0]), np.log(self.bounds[1])),
                method="bounded",
                options={"xatol": self.xatol},
            )
            self.temperature_ = float(np.exp(res.x))
        self.nll_ = self._nll(p, y, self.temperature_)
        return self

    def transform(self, probs: Any) -> np.ndarray:
        """Return ``softmax(log probs / temperature_)``, shape (n_items, n_options).

        Options with probability 0 stay at exactly 0.
        """
        if not hasattr(self, "temperature_"):
            raise RuntimeError(
                "TemperatureScaling is not fitted yet; call fit(probs, labels) first"
            )
        p = check_probs(probs)
        s = self._log_probs(p, p > 0) / self.temperature_
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)

    def fitted_params(self) -> dict:
        """Fitted parameters as plain JSON-able values."""
        return {"temperature": self.temperature_, "nll": self.nll_}


class _TopLabelCalibrator:
    """Shared fit/transform for calibrators of the top-label confidence."""

    def fit(self, probs: Any, labels: Any, *, n_options: Any = None):
        """Fit the confidence map on (confidence, correct) pairs.

        Parameters
        ----------
        probs : array-like of shape (n_items, n_options)
        labels : array-like of shape (n_items,)
        n_options : array-like of shape (n_items,), optional
            Real option count of each row (checked: zero padding beyond it, labels below it).

        Returns
        -------
        self
        """
        f = check_forecasts(probs, labels, n_options)
        self._fit_map(f.confidence, f.correct)
        self.fitted_ = True
        return self

    def transform(self, probs: Any) -> np.ndarray:
        """Recalibrate the top-label confidence of each row; shape (n_items, n_options).

        The other options are rescaled proportionally, rows still sum to 1, zeros stay 0, and
        the argmax is unchanged (the new confidence is floored just above the runner-up).
        """
        if not getattr(self, "fitted_", False):
            raise RuntimeError(
                f"{type(self).__name__} is not fitted yet; call fit(probs, labels) first"
            )
        p = check_probs(probs)
        return _rescale_top_label(p, self.calibrate_confidence(_top_label(p)[1]))

    def calibrate_confidence(self, confidence: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_map(self, conf: np.ndarray, correct: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError


class HistogramBinning(_TopLabelCalibrator):
    """Histogram binning of the top-label confidence.

    Confidences are put in ``n_bins`` equal-width bins ``[i/M, (i+1)/M)``, the last bin closed
    (bin index ``floor(conf * M)``, clipped; the same bins as the ECE in DESIGN.md), and each
    bin maps to the accuracy of the fitting items in it. Bins without fitting items keep the
    identity map (``empty="identity"``, no evidence, no change) or map to the bin midpoint
    (``empty="midpoint"``, as netcal does).

    Parameters
    ----------
    n_bins : int, default=10
    empty : {"identity", "midpoint"}, default="identity"

    Attributes
    ----------
    bin_counts_ : ndarray of shape (n_bins,)
        Fitting items per bin.
    bin_accuracy_ : ndarray of shape (n_bins,)
        Accuracy per bin; NaN for empty bins.

    References
    ----------
    .. [1] B. Zadrozny and C. Elkan, "Obtaining calibrated probability estimates from decision
       trees and naive Bayesian classifiers", ICML 2001.

    Examples
    --------
    >>> hb = HistogramBinning(n_bins=10).fit([[0.5, 0.5], [0.5, 0.5], [0.3, 0.7]], [0, 1, 1])
    >>> hb.calibrate_confidence([0.5, 0.75, 0.95]).tolist()
    [0.5, 1.0, 0.95]
    """

    def __init__(self, n_bins: int = 10, *, empty: str = "identity"):
        if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise UserError(f"Expected n_bins to be a positive integer, got {n_bins!r}")
        if empty not in ("identity", "midpoint"):
            raise UserError(f"Expected empty to be 'identity' or 'midpoint', got {empty!r}")
        self.n_bins = int(n_bins)
        self.empty = empty

    def _bin(self, conf: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(conf * self.n_bins).astype(np.int64), 0, self.n_bins - 1)

    def _fit_map(self, conf: np.ndarray, correct: np.ndarray) -> None:
        b = self._bin(conf)
        self.bin_counts_ = np.bincount(b, minlength=self.n_bins)
        hits = np.bincount(b, weights=correct, minlength=self.n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.bin_accuracy_ = hits / self.bin_counts_

    def calibrate_confidence(self, confidence: Any) -> np.ndarray:
        """Map confidences, shape (n,), to calibrated confidences, shape (n,)."""
        c = np.asarray(confidence, dtype=np.float64)
        b = self._bin(c)
        fallback = c if self.empty == "identity" else (b + 0.5) / self.n_bins
        return np.where(self.bin_counts_[b] > 0, self.bin_accuracy_[b], fallback)

    def fitted_params(self) -> dict:
        """Fitted parameters as plain JSON-able values (``None`` for empty bins)."""
        acc = [None if n == 0 else float(a) for n, a in zip(self.bin_counts_, self.bin_accuracy_)]
        return {"n_bins": self.n_bins, "bin_counts": self.bin_counts_.tolist(), "bin_accuracy": acc}


class IsotonicCalibration(_TopLabelCalibrator):
    """Isotonic regression of correctness on the top-label confidence.

    Fits a non-decreasing map with scikit-learn's ``IsotonicRegression(increasing=True,
    y_min=0, y_max=1, out_of_bounds="clip")``: pool-adjacent-violators on the fitting points,
    linear interpolation between them, and constant beyond the fitted range.

    Attributes
    ----------
    x_thresholds_, y_thresholds_ : ndarray of shape (n_thresholds,)
        The fitted map's knots.

    References
    ----------
    .. [1] B. Zadrozny and C. Elkan, "Transforming classifier scores into accurate multiclass
       probability estimates", KDD 2002.

    Examples
    --------
    >>> iso = IsotonicCalibration().fit([[0.6, 0.4], [0.7, 0.3], [0.9, 0.1]], [0, 1, 0])
    >>> iso.calibrate_confidence([0.6, 0.8, 0.95]).round(6).tolist()
    [0.5, 0.75, 1.0]
    """

    def _fit_map(self, conf: np.ndarray, correct: np.ndarray) -> None:
        from sklearn.isotonic import IsotonicRegression

        self._iso = IsotonicRegression(increasing=True, y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self._iso.fit(conf, correct)
        self.x_thresholds_ = self._iso.X_thresholds_
        self.y_thresholds_ = self._iso.y_thresholds_

    def calibrate_confidence(self, confidence: Any) -> np.ndarray:
        """Map confidences, shape (n,), to calibrated confidences, shape (n,)."""
        c = np.asarray(confidence, dtype=np.float64)
        return np.asarray(self._iso.predict(c), dtype=np.float64)

    def fitted_params(self) -> dict:
        """Fitted parameters as plain JSON-able values."""
        return {
            "x_thresholds": self.x_thresholds_.tolist(),
            "y_thresholds": self.y_thresholds_.tolist(),
        }


CALIBRATORS: dict[str, Callable[[], Calibrator]] = {
    "temperature": TemperatureScaling,
    "histogram": HistogramBinning,
    "isotonic": IsotonicCalibration,
}


# --------------------------------------------------------------------------- cross-fitting
@dataclass(frozen=True)
class CrossFitResult:
    """Out-of-sample calibrated probabilities from :func:`cross_fit`.

    Attributes
    ----------
    probs : ndarray of shape (n_items, n_options)
        Calibrated probabilities in the input order; row ``i`` comes from the calibrator fitted
        on the folds that do not contain item ``i``.
    fold : ndarray of shape (n_items,)
        The fold (0 .. n_folds - 1) each item was held out in.
    params : tuple of dict, length n_folds
        Each fold's fitted parameters (``fitted_params()``; empty when a calibrator has none).
    method : str
        The calibrator's registry name, or its class name for a factory.
    """

    probs: np.ndarray
    fold: np.ndarray
    params: tuple[dict, ...]
    method: str

    def fold_values(self, key: str) -> np.ndarray:
        """One fitted parameter across folds, shape (n_folds,): ``fold_values("temperature")``."""
        return np.asarray([p[key] for p in self.params])


def _assign_folds(conf: np.ndarray, n_folds: int, seed: int, stratify: bool) -> np.ndarray:
    n = conf.shape[0]
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    if not stratify:
        fold[rng.permutation(n)] = np.arange(n) % n_folds
        return fold
    order = np.lexsort((rng.random(n), conf))  # by confidence, random among ties
    n_blocks = -(-n // n_folds)
    perms = np.argsort(rng.random((n_blocks, n_folds)), axis=1).ravel()[:n]
    fold[order] = perms  # each run of n_folds consecutive confidences spreads over all folds
    return fold


def cross_fit(
    calibrator: str | Callable[[], Calibrator],
    probs: Any,
    labels: Any,
    *,
    n_folds: int = 5,
    seed: int = 0,
    stratify: bool = True,
    n_options: Any = None,
) -> CrossFitResult:
    """Calibrate every item with a calibrator fitted on the other folds (k-fold cross-fitting).

    Metrics computed on ``result.probs`` are out of sample: no item's label is used to fit the
    calibrator that transforms it. Folds are assigned from the probabilities and ``seed`` only,
    never from the labels. With ``stratify=True`` items are sorted by confidence and each run of
    ``n_folds`` neighbours is spread over all folds, so every fold covers the whole confidence
    range (what histogram and isotonic maps need); fold sizes differ by at most one.

    Parameters
    ----------
    calibrator : str or callable
        A name in :data:`CALIBRATORS` ("temperature", "histogram", "isotonic") or a zero-argument
        factory returning an unfitted calibrator (e.g. ``lambda: HistogramBinning(15)``).
    probs : array-like of shape (n_items, n_options)
        Rows sum to 1; zero-padded for items with fewer options.
    labels : array-like of shape (n_items,)
        0-based index of the right option.
    n_folds : int, default=5
        At least 2 and at most ``n_items``.
    seed : int, default=0
        Seeds the fold assignment; the result is deterministic for a seed.
    stratify : bool, default=True
        Spread each fold over the confidence range (see above); else a plain random split.
    n_options : array-like of shape (n_items,), optional
        Real option count of each row, checked once here (zero padding beyond it, labels below
        it); the calibrators treat the zero padding as absent options either way.

    Returns
    -------
    CrossFitResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.dirichlet(np.ones(4) * 0.3, size=50)
    >>> res = cross_fit("temperature", p, rng.integers(0, 4, size=50), n_folds=5)
    >>> res.probs.shape, res.fold_values("temperature").shape
    ((50, 4), (5,))
    """
    if isinstance(calibrator, str):
        if calibrator not in CALIBRATORS:
            raise UserError(f"Expected a calibrator in {sorted(CALIBRATORS)}, got {calibrator!r}")
        method, factory = calibrator, CALIBRATORS[calibrator]
    elif callable(calibrator):
        factory = calibrator
        method = getattr(calibrator, "__name__", type(calibrator).__name__)
    else:
        raise UserError(f"Expected a calibrator name or factory, got {type(calibrator).__name__}")
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise UserError(f"Expected n_folds to be an integer >= 2, got {n_folds!r}")
    f = check_forecasts(probs, labels, n_options)
    p, y, n = f.probs, f.labels, f.n
    if n < n_folds:
        raise UserError(
            f"Expected at least n_folds={n_folds} items to cross-fit (one per fold), got {n}"
        )
    fold = _assign_folds(f.confidence, int(n_folds), seed, stratify)
    out = np.empty_like(p)
    params: list[dict] = []
    for k in range(n_folds):
        held = fold == k
        cal = factory()
        cal.fit(p[~held], y[~held])
        out[held] = cal.transform(p[held])
        params.append(cal.fitted_params() if hasattr(cal, "fitted_params") else {})
    return CrossFitResult(probs=out, fold=fold, params=tuple(params), method=method)
