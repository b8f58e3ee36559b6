"""Post-hoc calibrators for multiple-choice option probabilities, evaluated out of sample.

Every calibrator has one interface, ``fit(probs, labels) -> self`` and
``transform(probs) -> probs``, and is listed by name in :data:`CALIBRATORS`:

- :class:`TemperatureScaling` (``"temperature"``) divides the log-probabilities by one
  fitted temperature (Guo et al., 2017);
- :class:`HistogramBinning` (``"histogram"``) and :class:`IsotonicCalibration`
  (``"isotonic"``) recalibrate the top-label confidence (Zadrozny & Elkan, 2001, 2002);
- :class:`BBQ` (``"bbq"``, Naeini et al., 2015), :class:`BetaCalibration` (``"beta"``, Kull
  et al., 2017) and :class:`LogisticCalibration` (``"logistic"``, Platt scaling, 1999)
  recalibrate the top-label confidence with netcal (an optional extra), and :class:`ENIR`
  (``"enir"``, Naeini & Cooper, 2016) with our own NumPy near-isotonic path;
- :class:`DirichletCalibration` (``"dirichlet"``) maps all the options at once,
  ``softmax(W log p + b)`` (Kull et al., 2019).

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
  No calibrator here changes the prediction **except** :class:`DirichletCalibration`, whose
  full-matrix map may move the argmax (and so change the accuracy); it also needs every item
  to have the same number of options.
- Top-label recalibration (histogram, isotonic, bbq, enir, beta, logistic) maps the confidence
  ``c`` to ``c'`` and rescales the other options by ``(1 - c') / (1 - c)``, so their ratios are
  kept and the row still sums to 1. ``c'`` is floored just above the point where the runner-up
  would overtake the top option, so the argmax never changes. A row whose whole mass is on one
  option has nowhere to move mass to and is returned unchanged.

This module is NumPy/SciPy; scikit-learn is imported only when an isotonic calibrator is
fitted, and netcal (with torch and pyro, which it imports) only inside ``fit`` and
``transform`` of the netcal-backed calibrators. A missing netcal raises ``UserError``:
``calibrator 'bbq' needs netcal: pip install 'first-toolkit[netcal]'``. netcal 1.4.0 is used
where it is right, as the 1-D (confidence, correct) problem, which it treats as a binary
positive-class probability: exactly the top-label problem. Where it is wrong our code is used:

- its ``HistogramBinning`` bins confidences into ``[a, b)`` when fitting but into ``(a, b]``
  when transforming, so a confidence on a bin edge is calibrated with the neighbouring bin's
  accuracy (see ``tests/first_eval/test_calibrators.py``); :class:`HistogramBinning` bins by
  hand, and :class:`BBQ`, built from netcal's histograms, looks them up with the fitting bins;
- its ``ENIR`` is wrong: a step of its near-isotonic path overwrites the previous model's
  values, fusing three or more groups at once leaves confidences that map to 0, it raises when
  the fitting items are all right or all wrong or when the path reaches one group (a confidence
  unrelated to correctness), and it splits tied confidences between groups; :class:`ENIR` is
  our own (NumPy; it scores and selects the path's maps as netcal does);
- it has no Dirichlet calibration (its multi-class ``LogisticCalibration`` is vector scaling),
  so :class:`DirichletCalibration` is our own, checked against scikit-learn's multinomial
  logistic regression on log-probabilities.

See ``tests/first_eval/test_calibrators_netcal.py``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import logsumexp

from first_eval.calibration._checks import PROB_FLOOR, check_forecasts, check_probs
from first_eval.errors import UserError

__all__ = [
    "BBQ",
    "CALIBRATORS",
    "ENIR",
    "BetaCalibration",
    "Calibrator",
    "CrossFitResult",
    "DirichletCalibration",
    "HistogramBinning",
    "IsotonicCalibration",
    "LogisticCalibration",
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


# --------------------------------------------------------------------------- netcal-backed
_NETCAL_EXTRA = "pip install 'first-toolkit[netcal]'"


def _netcal(method: str, module: str) -> Any:
    """``netcal.binning`` or ``netcal.scaling``, imported for calibrator ``method``.

    netcal is an optional extra (it imports torch and pyro); a missing one is a ``UserError``.
    """
    try:
        if module == "binning":
            import netcal.binning as mod
        else:
            import netcal.scaling as mod
    except ImportError as exc:
        missing = (exc.name or "netcal").split(".")[0]
        why = "" if missing == "netcal" else f" (importing it failed: {exc})"
        raise UserError(f"calibrator {method!r} needs netcal: {_NETCAL_EXTRA}{why}") from None
    return mod


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence netcal: it prints "WARNING: Not all class labels ..." to stdout, BBQ draws a
    tqdm bar on stderr, and pyro warns ``independent is deprecated`` on every fit.
    (``redirect_stdout`` swaps ``sys.stdout`` for the whole process while netcal runs.)"""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _unit(confidence: Any) -> np.ndarray:
    """Confidences as float64 in [0, 1]: a row may sum to 1 within tolerance with its top
    option a hair above 1, which netcal rejects; its scaling methods also insist that fit and
    transform see the same dtype."""
    return np.clip(np.asarray(confidence, dtype=np.float64).reshape(-1), 0.0, 1.0)


class _NetcalTopLabel(_TopLabelCalibrator):
    """A top-label calibrator fitted by netcal on the 1-D (confidence, correct) problem.

    When the fitting items are all right (or all wrong) the map is that constant, 1 (or 0),
    without calling netcal (which returns nearly that constant, after a warning on stdout).
    """

    name = ""
    _netcal_module = ""

    def _fit_map(self, conf: np.ndarray, correct: np.ndarray) -> None:
        _netcal(self.name, self._netcal_module)  # a missing netcal fails every fit alike
        x, y = _unit(conf), np.asarray(correct, dtype=np.float64)
        self.constant_ = float(y[0]) if np.all(y == y[0]) else None
        if self.constant_ is None:
            with _quiet():
                self._fit_netcal(x, y)

    def calibrate_confidence(self, confidence: Any) -> np.ndarray:
        """Map confidences, shape (n,), to calibrated confidences in [0, 1], shape (n,)."""
        x = _unit(confidence)
        if self.constant_ is not None:
            return np.full_like(x, self.constant_)
        with _quiet():
            out = self._transform_netcal(x)
        return np.clip(np.asarray(out, dtype=np.float64).reshape(-1), 0.0, 1.0)

    def _fit_netcal(self, x: np.ndarray, y: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transform_netcal(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class BBQ(_NetcalTopLabel):
    """Bayesian Binning into Quantiles of the top-label confidence (netcal's ``BBQ``).

    netcal fits equal-width histograms of every bin count from ``max(1, floor(n^(1/3) / 10))``
    to ``min(ceil(n / 5), ceil(10 n^(1/3)))`` and averages their maps, weighted by their
    relative likelihood under the score (BIC by default) after an elbow cut. Deterministic (no
    randomness). Each histogram is looked up with the bins it was fitted with (``[a, b)``, the
    last closed): netcal's own ``transform`` uses ``(a, b]``, which calibrates a confidence on
    an edge with the neighbouring bin. netcal's model weights are kept as it computes them
    (with its own lookup, which differs from ours only for fitting confidences on an edge).

    Parameters
    ----------
    score_function : {"BIC", "AIC"}, default="BIC"

    Attributes
    ----------
    n_bins_ : list of int
        Bin counts of the histograms kept.
    model_weights_ : ndarray of shape (n_models,)
        Their weights (sum to 1).

    References
    ----------
    .. [1] M. P. Naeini, G. F. Cooper and M. Hauskrecht, "Obtaining Well Calibrated
       Probabilities Using Bayesian Binning", AAAI 2015.
    """

    name = "bbq"
    _netcal_module = "binning"

    def __init__(self, *, score_function: str = "BIC"):
        if str(score_function).upper() not in ("BIC", "AIC"):
            raise UserError(f"Expected score_function to be 'BIC' or 'AIC', got {score_function!r}")
        self.score_function = str(score_function).upper()

    def _fit_netcal(self, x: np.ndarray, y: np.ndarray) -> None:
        binning = _netcal(self.name, self._netcal_module)
        self._bbq = binning.BBQ(score_function=self.score_function, equal_intervals=True).fit(x, y)
        self._edges = [np.asarray(h._bin_bounds[0], dtype=np.float64) for h in self._bbq._binning_models]
        self._maps = [np.asarray(h._bin_map, dtype=np.float64) for h in self._bbq._binning_models]
        self.n_bins_ = [int(e.size - 1) for e in self._edges]
        self.model_weights_ = np.asarray(self._bbq._model_scores, dtype=np.float64)

    def _transform_netcal(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        for edges, bin_map, w in zip(self._edges, self._maps, self.model_weights_):
            # The fitting bins (scipy's binned_statistic_dd): edges[i] <= x < edges[i + 1].
            idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
            out += w * bin_map[idx]
        return out

    def fitted_params(self) -> dict:
        """Fitted parameters as plain JSON-able values."""
        if self.constant_ is not None:
            return {"constant": self.constant_}
        return {"n_bins": self.n_bins_, "model_weights": self.model_weights_.tolist()}


def _near_isotonic_path(y: np.ndarray, w: np.ndarray) -> list[tuple[float, np.ndarray, int]]:
    """The nearly-isotonic regression path by modified PAV (Tibshirani, Hoefling & Tibshirani).

    For weighted points ``y`` (ordered by confidence) with weights ``w``, the solution of
    ``min 1/2 sum w_i (y_i - b_i)^2 + lam * sum (b_i - b_{i+1})_+`` for every ``lam`` at which
    adjacent groups fuse, from the perfect fit (``lam = 0``; points with equal consecutive ``y``
    start as one group, netcal's ``quick_init``) to the isotonic fit. Returns
    ``(lam, b, n_groups)`` triples, ``b`` of shape (n_points,).
    """
    vals = y.astype(np.float64)
    start = np.r_[True, vals[1:] != vals[:-1]]
    group = np.cumsum(start) - 1
    weight = np.bincount(group, weights=w)
    vals = np.bincount(group, weights=w * vals) / weight
    lam, path = 0.0, [(0.0, vals[group], vals.size)]
    while vals.size > 1:
        viol = vals[:-1] > vals[1:]
        slope = (np.r_[False, viol].astype(np.float64) - np.r_[viol, False]) / weight
        gap, closing = vals[1:] - vals[:-1], slope[:-1] - slope[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(closing != 0, gap / closing, np.inf)
        t[t < 0] = np.inf  # only pairs moving towards each other collide
        dt = float(t.min())
        if not np.isfinite(dt):  # no violators left: the isotonic fit
            break
        lam += dt
        vals = vals + slope * dt
        fuse = t <= dt * (1.0 + 1e-9) + 1e-15  # every pair that meets now, chains included
        new = np.r_[0, np.cumsum(~fuse)]
        weight, vals = np.bincount(new, weights=weight), np.bincount(new, weights=weight * vals)
        vals = vals / weight
        group = new[group]
        path.append((lam, vals[group], vals.size))
    return path


def _elbow_weights(log_lik: np.ndarray, dof: np.ndarray, n: int, score_function: str,
                   alpha: float = 0.001) -> tuple[np.ndarray, np.ndarray]:
    """netcal's model selection: relative likelihood under BIC (or AIC), then its elbow cut.

    Returns the kept models' indices (best first) and their weights (sum to 1).
    """
    penalty = dof * (np.log(n) if score_function == "BIC" else 2.0)
    score = -2.0 * log_lik + penalty
    rel = np.exp((score.min() - score) / 2.0)
    order = np.argsort(rel, kind="stable")[::-1]
    s, var, k = rel[order], np.var(rel), 0
    while k < s.size - 1 and s[k] == s[k + 1]:
        k += 1
    while k < s.size - 1 and (s[k] - s[k + 1]) / var > alpha:
        k += 1
    keep = order[: k + 1]
    return keep, rel[keep] / rel[keep].sum()


class ENIR(_TopLabelCalibrator):
    """Ensemble of Near-Isotonic Regressions of the top-label confidence (Naeini & Cooper, 2016).

    The nearly-isotonic path (modified PAV) runs from the perfect fit of the fitting items to
    their isotonic fit; every map on it after the perfect fit is scored by BIC (or AIC; the
    log-likelihood of correctness, each log floored at -100 as torch's ``BCELoss`` does, and
    one degree of freedom per constant piece) and the maps kept by netcal's elbow cut are
    averaged, weighted by relative likelihood. A map sends a confidence to the value of the
    nearest fitting confidence (at a midpoint: the lower one) and is constant beyond them.
    Items with equal confidences are pooled first, so the map is a function of the confidence.
    Deterministic; NumPy only.

    Not netcal's ``ENIR``, which is wrong in 1.4.0: computing a step of its
    ``NearIsotonicRegression`` writes the next values into the previous model's arrays (so each
    model of the ensemble carries its successor's values), fusing three or more groups at once
    leaves a gap that no group covers (confidences there are mapped to 0), it raises when the
    fitting items are all right or all wrong or when the path reaches one group, and tied
    confidences are split between groups (see ``tests/first_eval/test_calibrators_netcal.py``).

    Parameters
    ----------
    score_function : {"BIC", "AIC"}, default="BIC"

    Attributes
    ----------
    knots_ : ndarray of shape (n_knots,)
        The distinct fitting confidences.
    values_ : ndarray of shape (n_models, n_knots)
        Each kept map's value at the knots.
    model_weights_ : ndarray of shape (n_models,)
    lambdas_ : ndarray of shape (n_models,)
        The penalty of each kept map on the path.

    References
    ----------
    .. [1] M. P. Naeini and G. F. Cooper, "Binary Classifier Calibration Using an Ensemble of
       Near Isotonic Regression Models", ICDM 2016.
    .. [2] R. J. Tibshirani, H. Hoefling and R. Tibshirani, "Nearly-Isotonic Regression",
       Technometrics 53(1), 2011.

    Examples
    --------
    >>> p = [[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]]
    >>> enir = ENIR().fit(p, [0, 1, 0, 0])  # right, wrong, right, right
    >>> enir.calibrate_confidence([0.6, 0.7, 0.95]).round(3).tolist()
    [0.5, 0.5, 1.0]
    """

    def __init__(self, *, score_function: str = "BIC"):
        if str(score_function).upper() not in ("BIC", "AIC"):
            raise UserError(f"Expected score_function to be 'BIC' or 'AIC', got {score_function!r}")
        self.score_function = str(score_function).upper()

    def _fit_map(self, conf: np.ndarray, correct: np.ndarray) -> None:
        knots, inverse = np.unique(np.asarray(conf, dtype=np.float64), return_inverse=True)
        count = np.bincount(inverse, minlength=knots.size).astype(np.float64)
        hits = np.bincount(inverse, weights=correct, minlength=knots.size)
        path = _near_isotonic_path(hits / count, count)
        models = path[1:] or path  # the perfect fit overfits; keep it only when it is all there is
        values = np.vstack([b for _, b, _ in models])
        q = values[:, inverse]  # each item's calibrated confidence under each map
        with np.errstate(divide="ignore"):
            log_lik = (correct * np.maximum(np.log(q), -100.0)
                       + (1.0 - correct) * np.maximum(np.log1p(-q), -100.0)).sum(axis=1)
        dof = np.array([g for _, _, g in models], dtype=np.float64)  # one per constant piece
        keep, weights = _elbow_weights(log_lik, dof, conf.size, self.score_function)
        self.knots_, self.values_ = knots, values[keep]
        self.model_weights_ = weights
        self.lambdas_ = np.array([models[i][0] for i in keep])
        self._midpoints = (knots[:-1] + knots[1:]) / 2.0

    def calibrate_confidence(self, confidence: Any) -> np.ndarray:
        """Map confidences, shape (n,), to calibrated confidences in [0, 1], shape (n,)."""
        c = np.asarray(confidence, dtype=np.float64).reshape(-1)
        idx = np.searchsorted(self._midpoints, c, side="left")  # at a midpoint -> the lower knot
        return np.clip(self.model_weights_ @ self.values_[:, idx], 0.0, 1.0)

    def fitted_params(self) -> dict:
        """Fitted parameters as plain JSON-able values."""
        return {"lambdas": self.lambdas_.tolist(), "model_weights": self.model_weights_.tolist(),
                "n_knots": int(self.knots_.size)}


class _NetcalScaling(_NetcalTopLabel):
    """netcal's logistic-regression calibrators, fitted by maximum likelihood (``method="mle"``).

    ``"mle"`` minimizes the mean binary cross-entropy with SciPy's L-BFGS-B (torch evaluates the
    loss, finite-difference gradients): deterministic, no sampling, so ``seed`` (passed as
    netcal's ``random_state``) does not change the result. netcal's other methods
    (``"variational"``, ``"mcmc"``) sample and are not used; ``"momentum"`` is detection-only.
    Computed in float64 (netcal clips confidences to ``[eps, 1 - eps]`` of that dtype).
    """

    _netcal_module = "scaling"
    _netcal_class = ""

    def __init__(self, *, seed: int = 0):
        self.seed = int(seed)

    def _fit_netcal(self, x: np.ndarray, y: np.ndarray) -> None:
        cls = getattr(_netcal(self.name, self._netcal_module), self._netcal_class)
        self._model = cls(method="mle").fit(x, y, random_state=self.seed, tensorboard=False)
        sites = self._model._sites  # netcal's BetaCalibration.weights getter raises (KeyError)
        self.weights_ = np.asarray(sites["weights"]["values"], dtype=np.float64).reshape(-1)
        self.intercept_ = float(np.asarray(sites["bias"]["values"]).reshape(-1)[0])

    def _transform_netcal(self, x: np.ndarray) -> np.ndarray:
        return self._model.transform(x)

    def fitted_params(self) -> dict:
        """Fitted parameters as plain JSON-able values."""
        if self.constant_ is not None:
            return {"constant": self.constant_}
        return {"weights": self.weights_.tolist(), "intercept": self.intercept_}


class LogisticCalibration(_NetcalScaling):
    """Platt scaling of the top-label confidence: ``c' = sigmoid(a * logit(c) + b)``.

    netcal's ``LogisticCalibration`` on the 1-D confidences (see :class:`_NetcalScaling` for
    the fitting settings); ``weights_ = [a]``, ``intercept_ = b``.

    Parameters
    ----------
    seed : int, default=0
        netcal's ``random_state`` (no effect with maximum likelihood).

    References
    ----------
    .. [1] J. Platt, "Probabilistic Outputs for Support Vector Machines and Comparisons to
       Regularized Likelihood Methods", Advances in Large Margin Classifiers, 1999.
    """

    name = "logistic"
    _netcal_class = "LogisticCalibration"


class BetaCalibration(_NetcalScaling):
    """Beta calibration of the top-label confidence:
    ``c' = sigmoid(a * log(c) - b * log(1 - c) + m)`` with ``a, b >= 0`` (a monotone map).

    netcal's ``BetaCalibration`` on the 1-D confidences (see :class:`_NetcalScaling` for the
    fitting settings); the bounds ``a, b >= 0`` are L-BFGS-B box constraints.
    ``weights_ = [a, b]``, ``intercept_ = m``.

    Parameters
    ----------
    seed : int, default=0
        netcal's ``random_state`` (no effect with maximum likelihood).

    References
    ----------
    .. [1] M. Kull, T. Silva Filho and P. Flach, "Beta calibration: a well-founded and easily
       implemented improvement on logistic calibration for binary classifiers", AISTATS 2017.
    """

    name = "beta"
    _netcal_class = "BetaCalibration"


# --------------------------------------------------------------------------- Dirichlet
def _common_option_count(p: np.ndarray, n_options: Any, method: str) -> int:
    """The one option count of every row (``n_options``, else 1 + the last non-zero column)."""
    if n_options is not None:
        counts = np.asarray(n_options, dtype=np.int64).reshape(-1)
    else:
        nonzero = p > 0
        counts = p.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    if counts.size and (counts != counts[0]).any():
        raise UserError(f"calibrator {method!r} needs every item to have the same number of options, "
                        f"got {int(counts.min())} to {int(counts.max())} (zero-padded rows)")
    return int(counts[0])


class DirichletCalibration:
    """Dirichlet calibration of all the options: ``transform(p) = softmax(W log p + b)``.

    A multinomial logistic regression on the log-probabilities, with a full ``K x K`` matrix
    ``W`` and intercept ``b`` (Kull et al., 2019), fitted by minimizing the mean negative
    log-likelihood plus the ODIR penalty ``reg_off_diagonal * mean of W's off-diagonal entries
    squared + reg_intercept * mean of b squared`` (the diagonal is free), with BFGS and the
    exact gradient from the identity map (``W = I``, ``b = 0``): deterministic. With both
    penalties 0 it is the maximum-likelihood fit, the same map as scikit-learn's
    ``LogisticRegression(C=inf)`` on ``log p``. netcal 1.4.0 has no Dirichlet
    calibration (its multi-class ``LogisticCalibration`` is vector scaling, a diagonal ``W``).

    Unlike every other calibrator here it **can change the argmax** (and so the accuracy): the
    matrix moves mass between options. Every item needs the same number of options ``K``
    (``n_options`` if given, else each row's last non-zero column: a row whose last option has
    probability exactly 0 reads as shorter); columns beyond ``K`` must be zero padding and stay
    0, and so does any option with probability exactly 0. Log-probabilities are floored at
    ``log(1e-12)``; a gold option with probability 0 enters the fit at that floor.

    Parameters
    ----------
    reg_off_diagonal : float, default=1e-3
    reg_intercept : float, default=1e-3
    max_iter : int, default=2000
        BFGS iterations.

    Attributes
    ----------
    n_classes_ : int
        ``K``.
    weights_ : ndarray of shape (K, K)
        ``W``; row ``k`` gives option ``k``'s logit.
    intercept_ : ndarray of shape (K,)
    nll_ : float
        Mean negative log-likelihood on the fitting data (without the penalty).

    References
    ----------
    .. [1] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song and P. Flach,
       "Beyond temperature scaling: Obtaining well-calibrated multiclass probabilities with
       Dirichlet calibration", NeurIPS 2019.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.dirichlet(np.ones(3), size=200)
    >>> dc = DirichletCalibration().fit(p, rng.integers(0, 3, size=200))
    >>> dc.weights_.shape, bool(np.allclose(dc.transform(p).sum(axis=1), 1.0))
    ((3, 3), True)
    """

    name = "dirichlet"

    def __init__(self, *, reg_off_diagonal: float = 1e-3, reg_intercept: float = 1e-3,
                 max_iter: int = 2000):
        for key, value in (("reg_off_diagonal", reg_off_diagonal), ("reg_intercept", reg_intercept)):
            if not (np.isfinite(value) and value >= 0):
                raise UserError(f"Expected {key} to be a finite number >= 0, got {value!r}")
        self.reg_off_diagonal = float(reg_off_diagonal)
        self.reg_intercept = float(reg_intercept)
        self.max_iter = int(max_iter)

    @staticmethod
    def _features(p: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(p, PROB_FLOOR))

    def _loss(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, support: np.ndarray):
        n, k = x.shape
        w, b = theta[: k * k].reshape(k, k), theta[k * k:]
        z = np.where(support, x @ w.T + b, -np.inf)
        lse = logsumexp(z, axis=1)
        rows = np.arange(n)
        nll = float(np.mean(lse - z[rows, y]))
        g = np.exp(z - lse[:, None])  # softmax; 0 where an option is absent
        g[rows, y] -= 1.0
        g /= n
        grad_w, grad_b = g.T @ x, g.sum(axis=0)
        off = ~np.eye(k, dtype=bool)
        lam, mu = self.reg_off_diagonal / (k * (k - 1)), self.reg_intercept / k
        loss = nll + lam * float(np.sum(w[off] ** 2)) + mu * float(b @ b)
        grad_w = grad_w + 2.0 * lam * np.where(off, w, 0.0)
        grad_b = grad_b + 2.0 * mu * b
        return loss, np.concatenate([grad_w.ravel(), grad_b]), nll

    def fit(self, probs: Any, labels: Any, *, n_options: Any = None) -> DirichletCalibration:
        """Fit ``W`` and ``b``.

        Parameters
        ----------
        probs : array-like of shape (n_items, n_options)
        labels : array-like of shape (n_items,)
        n_options : array-like of shape (n_items,), optional
            Real option count of each row (checked); all must be equal.

        Returns
        -------
        self

        Raises
        ------
        UserError
            Items with different numbers of options.
        """
        f = check_forecasts(probs, labels, n_options)
        k = _common_option_count(f.probs, n_options, self.name)
        p, y = f.probs[:, :k], f.labels
        x = self._features(p)
        support = p > 0
        support[np.arange(p.shape[0]), y] = True
        theta0 = np.concatenate([np.eye(k).ravel(), np.zeros(k)])
        res = minimize(lambda t: self._loss(t, x, y, support)[:2], theta0, jac=True, method="BFGS",
                       options={"maxiter": self.max_iter, "gtol": 1e-9})
        self.n_classes_ = k
        self.weights_ = res.x[: k * k].reshape(k, k).copy()
        self.intercept_ = res.x[k * k:].copy()
        self.nll_ = self._loss(res.x, x, y, support)[2]
        return self

    def transform(self, probs: Any) -> np.ndarray:
        """Return ``softmax(W log probs + b)``, shape (n_items, n_options).

        Rows sum to 1; options with probability 0 (padding) stay at exactly 0; the argmax may
        change.
        """
        if not hasattr(self, "weights_"):
            raise RuntimeError("DirichletCalibration is not fitted yet; call fit(probs, labels) first")
        p = check_probs(probs)
        k = _common_option_count(p, None, self.name)
        if k != self.n_classes_:
            raise UserError(f"calibrator {self.name!r} was fitted on {self.n_classes_} options, "
                            f"got items with {k}")
        z = np.where(p[:, :k] > 0, self._features(p[:, :k]) @ self.weights_.T + self.intercept_, -np.inf)
        out = np.zeros_like(p)
        out[:, :k] = np.exp(z - logsumexp(z, axis=1, keepdims=True))
        return out

    def fitted_params(self) -> dict:
        """Fitted parameters as plain JSON-able values."""
        return {"weights": self.weights_.tolist(), "intercept": self.intercept_.tolist(), "nll": self.nll_}


CALIBRATORS: dict[str, Callable[[], Calibrator]] = {
    "temperature": TemperatureScaling,
    "histogram": HistogramBinning,
    "isotonic": IsotonicCalibration,
    "bbq": BBQ,
    "enir": ENIR,
    "beta": BetaCalibration,
    "logistic": LogisticCalibration,
    "dirichlet": DirichletCalibration,
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
        A name in :data:`CALIBRATORS` ("temperature", "histogram", "isotonic", "bbq", "enir",
        "beta", "logistic", "dirichlet") or a zero-argument factory returning an unfitted
        calibrator (e.g. ``lambda: HistogramBinning(15)``).
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
