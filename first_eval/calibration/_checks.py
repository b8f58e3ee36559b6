"""The one public door: validate ``probs``/``labels`` once and derive the top-label view.

Every public metric and calibrator calls :func:`check_forecasts` (or :func:`check_probs` where
there are no labels); everything behind it works on the validated arrays and never re-checks.
The rules' constants live here and only here: :data:`SUM_TOLERANCE` (also the predictions
table's rule, :mod:`first_eval.predictions`) and :data:`PROB_FLOOR` (the floor under every log).

Errors are :class:`~first_eval.errors.UserError` (a :class:`ValueError`), worded
``"Expected ..., got ..."``, so the command lines print them as one line and library callers
can catch ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from first_eval.errors import UserError

#: Rows of ``probs`` must sum to 1 within this absolute tolerance (the predictions-table rule).
SUM_TOLERANCE = 1e-6

#: Probabilities are floored at this before taking logs (NLL, temperature scaling).
PROB_FLOOR = 1e-12


@dataclass(frozen=True)
class Forecasts:
    """Validated multiple-choice forecasts and their top-label view (all arrays read-only).

    Attributes
    ----------
    probs : ndarray of shape (n_items, n_options), float64
    labels : ndarray of shape (n_items,), int64
    n_options : ndarray of shape (n_items,), int64
        How many leading columns of each row are real options (the rest is zero padding).
    confidence : ndarray of shape (n_items,)
        Top-label confidence, ``probs.max(axis=1)``.
    prediction : ndarray of shape (n_items,)
        ``probs.argmax(axis=1)``: ties go to the lowest index.
    correct : ndarray of shape (n_items,), float64
        1.0 where ``prediction == labels``, else 0.0.
    """

    probs: np.ndarray
    labels: np.ndarray
    n_options: np.ndarray
    confidence: np.ndarray
    prediction: np.ndarray
    correct: np.ndarray

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _probs_matrix(probs) -> np.ndarray:
    """A float64 copy of ``probs`` once its shape, finiteness, signs and row sums are checked."""
    try:
        p = np.array(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UserError(f"Expected probs as a numeric array of shape (n_items, n_options), got "
                        f"{type(probs).__name__} that NumPy cannot convert ({exc})") from None
    if p.ndim != 2:
        raise UserError(f"Expected probs of shape (n_items, n_options), got shape {p.shape}"
                        + (" (a 1-D vector: pass both columns [1 - p, p] for two options)"
                           if p.ndim == 1 else ""))
    n, k = p.shape
    if n == 0:
        raise UserError("Expected at least one item, got 0")
    if k < 2:
        raise UserError(f"Expected at least 2 option columns, got {k}")
    if not np.isfinite(p).all():
        bad = int(np.flatnonzero(~np.isfinite(p).all(axis=1))[0])
        raise UserError(f"Expected finite probs, got {p[bad].tolist()} in row {bad}")
    if (p < 0).any():
        bad = int(np.flatnonzero((p < 0).any(axis=1))[0])
        raise UserError(f"Expected non-negative probs, got {p[bad].tolist()} in row {bad}")
    sums = p.sum(axis=1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        bad = int(np.flatnonzero(off)[0])
        raise UserError(f"Expected rows of probs to sum to 1 within {SUM_TOLERANCE:g}, "
                        f"got {sums[bad]:.9g} in row {bad}")
    return p


def _option_counts(p: np.ndarray, n_options) -> np.ndarray:
    """Each row's real option count, shape (n_items,), once the zero padding beyond it is checked."""
    n, k = p.shape
    if n_options is None:
        return np.full(n, k, dtype=np.int64)
    m = np.asarray(n_options)
    if m.ndim == 0:
        m = np.full(n, m)
    if m.shape != (n,) or m.dtype.kind not in "iu":
        raise UserError(f"Expected n_options as integers of shape ({n},), got "
                        f"{m.dtype} of shape {m.shape}")
    m = m.astype(np.int64)
    if ((m < 2) | (m > k)).any():
        bad = int(np.flatnonzero((m < 2) | (m > k))[0])
        raise UserError(f"Expected n_options in [2, {k}], got {m[bad]} in row {bad}")
    pad = np.arange(k)[None, :] >= m[:, None]
    if (p[pad] != 0).any():
        bad = int(np.flatnonzero((p * pad).any(axis=1))[0])
        raise UserError(f"Expected zero padding beyond n_options={m[bad]}, got "
                        f"{p[bad].tolist()} in row {bad}")
    return m


def check_probs(probs, n_options=None) -> np.ndarray:
    """Validate option probabilities without labels (what a calibrator's ``transform`` gets).

    Parameters
    ----------
    probs : array-like of shape (n_items, n_options)
        Finite, non-negative, each row summing to 1 within :data:`SUM_TOLERANCE`.
    n_options : array-like of shape (n_items,), optional
        As in :func:`check_forecasts`.

    Returns
    -------
    ndarray of shape (n_items, n_options), float64, read-only
        A validated copy of ``probs``.

    Raises
    ------
    UserError
        A :class:`ValueError` saying ``"Expected ..., got ..."`` for the first problem found.

    Examples
    --------
    >>> check_probs([[0.25, 0.75]]).tolist()
    [[0.25, 0.75]]
    """
    p = _probs_matrix(probs)
    _option_counts(p, n_options)
    return _frozen(p)


def check_forecasts(probs, labels, n_options=None) -> Forecasts:
    """Validate multiple-choice forecasts; raise ``UserError("Expected ..., got ...")``.

    Parameters
    ----------
    probs : array-like of shape (n_items, n_options)
        Option probabilities, finite, non-negative, each row summing to 1 within
        :data:`SUM_TOLERANCE` (1e-6).
    labels : array-like of shape (n_items,)
        0-based index of the correct option (integers, or floats with integral values), below
        the row's option count.
    n_options : array-like of shape (n_items,), optional
        Real option count of each row when ragged rows were zero-padded to a common width;
        columns at or beyond it must be 0. Default: every column is a real option.

    Returns
    -------
    Forecasts

    Raises
    ------
    UserError
        A :class:`ValueError` saying ``"Expected ..., got ..."`` for the first problem found.

    Examples
    --------
    >>> f = check_forecasts([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0]], [0, 0], n_options=[2, 2])
    >>> f.confidence.tolist(), f.correct.tolist()
    ([0.7, 0.8], [1.0, 0.0])
    >>> check_forecasts([[0.5, 0.5]], [2])
    Traceback (most recent call last):
    ...
    first_eval.errors.UserError: Expected labels in [0, 1], got 2 in row 0
    """
    p = _probs_matrix(probs)
    n, k = p.shape

    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise UserError(f"Expected labels of shape ({n},) to match probs {p.shape}, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise UserError(f"Expected integer labels, got non-integral values such as "
                            f"{y[~(np.isfinite(y) & (y == np.round(y)))][0]!r}")
    elif y.dtype.kind not in "iu":
        raise UserError(f"Expected integer labels, got dtype {y.dtype}")
    y = y.astype(np.int64)

    m = _option_counts(p, n_options)
    if ((y < 0) | (y >= m)).any():
        bad = int(np.flatnonzero((y < 0) | (y >= m))[0])
        raise UserError(f"Expected labels in [0, {m[bad] - 1}], got {y[bad]} in row {bad}")

    pred = p.argmax(axis=1)
    conf = p[np.arange(n), pred]
    correct = (pred == y).astype(np.float64)
    return Forecasts(_frozen(p), _frozen(y), _frozen(m), _frozen(conf), _frozen(pred), _frozen(correct))
