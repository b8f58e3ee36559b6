"""Seeded, vectorized bootstrap: confidence intervals for every metric and paired differences.

A resample draws n item indices uniformly with replacement (``Generator.integers``), in chunks
of about 2**21 / n resamples, chunk j from ``np.random.default_rng(SeedSequence(seed,
spawn_key=(j,)))``: resample i depends only on (seed, n, i), so 100 resamples are the first 100
of 1000. :func:`bootstrap_indices` returns them. A chunk's indices are drawn about 1 MB at a
time (the same stream) and each resample is counted once, in bytes, for every model it scores;
the metrics come from those counts through
:class:`first_eval.calibration.resampled.ResampledMetrics` (one sparse product per chunk, not a
Python loop of recomputes) and equal :func:`first_eval.calibration.metric_suite` on
``probs[idx], labels[idx]``.

Smooth ECE is included like every other metric: relplot's bandwidth bisection runs for all
resamples at once, each step settled by exact bounds (linear ones, then the first DCT terms
with a bound on the rest) and a batched inverse DCT only where those leave it open (see
:meth:`first_eval.calibration.smooth.SmoothECE.columns`).

Chunks of resamples run on up to four threads (one BLAS thread each); results do not depend on
the number of threads. Threads shorten the wall time but add CPU time, as they share the memory
bandwidth (``benchmarks/metrics_bench.py`` reports both).
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from first_eval.calibration import binning as _b
from first_eval.calibration._checks import check_forecasts
from first_eval.calibration.resampled import ResampledMetrics, Scratch, item_counts
from first_eval.calibration.suite import METRIC_NAMES

#: Items x resamples per block of work (about 16 MB of float64 counts).
_BLOCK = 1 << 21
#: Indices drawn at a time (about 1 MB of int32), so each resample is counted from cache.
_DRAW = 1 << 18
#: Threads over blocks (at most; fewer on machines with fewer cores).
_MAX_WORKERS = 4


@dataclass(frozen=True)
class PairedDifference:
    """Model A minus model B on the same items, with a paired-bootstrap CI and p-value.

    Attributes
    ----------
    metric : str
    difference : float
        metric(A) - metric(B) on the full sample.
    ci_low, ci_high : float
        Percentile interval of the resampled differences at the requested level.
    p_value : float
        Two-sided: ``min(1, 2 * min((1 + #{d* <= 0}) / (1 + B), (1 + #{d* >= 0}) / (1 + B)))``
        over the B finite resampled differences d* (the +1 counts the observed sample, so p is
        never 0; Davison & Hinkley 1997, North et al. 2002). p < 1 - level exactly when 0 lies
        outside the percentile interval (up to the +1).
    n_resamples : int
        Resamples with a finite difference (fewer than requested only for metrics that can be
        undefined, e.g. AUROC on a resample whose answers are all right).
    """

    metric: str
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_resamples: int


def _check(n_resamples, seed, level, metrics) -> tuple[str, ...]:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"Expected n_resamples as an integer >= 1, got {n_resamples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Expected seed as a non-negative integer, got {seed!r}")
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValueError(f"Expected level in (0, 1), got {level!r}")
    if metrics is None:
        return METRIC_NAMES
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown or not metrics:
        raise ValueError(f"Expected metrics from {', '.join(METRIC_NAMES)}, got {list(metrics)!r}")
    return tuple(m for m in METRIC_NAMES if m in set(metrics))


def _chunk_size(n: int) -> int:
    return max(1, _BLOCK // n)


def _chunk_rows(n: int, n_resamples: int, j: int) -> int:
    return min(_chunk_size(n), n_resamples - j * _chunk_size(n))


def _chunk_draws(n: int, n_resamples: int, seed: int, j: int,
                 rows_per_draw: int) -> Iterator[np.ndarray]:
    """Index rows of chunk j, from its own child seed ``(seed, j)``, ``rows_per_draw`` at a time.

    The chunk size depends on n only, so resample i is the same for any ``n_resamples``; the
    rows drawn a few at a time are the rows drawn at once (the generator carries its state,
    a half-used 64-bit word included, from one call to the next).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(j,)))
    dtype = np.int32 if n < 2**31 else np.int64
    rows = _chunk_rows(n, n_resamples, j)
    for start in range(0, rows, rows_per_draw):
        yield rng.integers(0, n, size=(min(rows_per_draw, rows - start), n), dtype=dtype)


def _chunk_indices(n: int, n_resamples: int, seed: int, j: int) -> np.ndarray:
    """Index rows of chunk j (all at once)."""
    return np.concatenate(list(_chunk_draws(n, n_resamples, seed, j, _chunk_size(n))), axis=0)


def _index_chunks(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    for j in range(-(-n_resamples // _chunk_size(n))):
        yield _chunk_indices(n, n_resamples, seed, j)


def bootstrap_indices(n: int, *, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """The resample index vectors the bootstrap functions use, shape (n_resamples, n).

    Examples
    --------
    >>> bootstrap_indices(5, n_resamples=2, seed=0).shape
    (2, 5)
    """
    _check(n_resamples, seed, 0.95, None)
    return np.concatenate(list(_index_chunks(int(n), n_resamples, seed)), axis=0)


def _one_blas_thread():
    """One BLAS thread per worker while resampling (threadpoolctl comes with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # still correct, only slower on busy machines
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_WORKERS))


def _resampled(engines: Sequence[ResampledMetrics], n: int, n_resamples: int, seed: int):
    """Per-resample metric values for each engine on the same resamples: list of dicts of (B,).

    Chunks of resamples are independent (own seeds, own counts), so they run on a few threads:
    NumPy, SciPy's sparse products and FFTs release the GIL for the heavy work.
    """
    n_chunks = -(-n_resamples // _chunk_size(n))
    scratch = Scratch()    # work arrays per thread, freed when this call returns

    def work(j: int) -> list[dict]:
        # count each resample once, in bytes, drawing about 1 MB of indices at a time
        counts = scratch.get("counts", (_chunk_rows(n, n_resamples, j), n), np.uint8)
        start = 0
        for idx in _chunk_draws(n, n_resamples, seed, j, max(1, _DRAW // n)):
            item_counts(idx, n, counts[start:start + idx.shape[0]])
            start += idx.shape[0]
        out = [engine(counts, scratch) for engine in engines]
        if all(whole for _, whole in out):
            return [values for values, _ in out]
        # an item drawn more than 255 times in some resample: count the chunk again in float
        wide = item_counts(_chunk_indices(n, n_resamples, seed, j), n, np.empty(counts.shape))
        return [engine(wide, scratch)[0] for engine in engines]

    workers = min(_workers(), n_chunks)
    with _one_blas_thread():
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                chunks = list(pool.map(work, range(n_chunks)))
        else:
            chunks = [work(j) for j in range(n_chunks)]
    return [{k: np.concatenate([c[e][k] for c in chunks]) for k in engine.metrics}
            for e, engine in enumerate(engines)]


def bootstrap_metrics(probs, labels, *, n_resamples: int = 1000, seed: int = 0, n_bins: int = 10,
                      scheme: str = "width", metrics=None, n_options=None) -> dict[str, np.ndarray]:
    """Each metric on each bootstrap resample: dict of metric -> ndarray of shape (n_resamples,).

    Parameters are those of :func:`bootstrap_ci`. Values can be NaN where a metric is undefined
    on a resample (AUROC when all its answers are right or all wrong).
    """
    names = _check(n_resamples, seed, 0.95, metrics)
    _b.check_binning(n_bins, scheme)
    f = check_forecasts(probs, labels, n_options)
    engine = ResampledMetrics(f, n_bins=n_bins, scheme=scheme, metrics=names)
    return _resampled([engine], f.n, n_resamples, seed)[0]


def _percentile_ci(values: np.ndarray, level: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(probs, labels, *, n_resamples: int = 1000, seed: int = 0, n_bins: int = 10,
                 scheme: str = "width", level: float = 0.95, metrics=None,
                 n_options=None) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals for every metric of the suite.

    Parameters
    ----------
    probs : array-like of shape (n_items, n_options)
    labels : array-like of shape (n_items,)
    n_resamples : int, default=1000
    seed : int, default=0
        Seed of ``np.random.default_rng``; the same seed gives the same intervals.
    n_bins : int, default=10
    scheme : {"width", "mass"}, default="width"
    level : float, default=0.95
        Coverage of the interval: the (1 - level)/2 and (1 + level)/2 quantiles (linear
        interpolation) of the resampled values.
    metrics : sequence of str, optional
        Subset of :data:`first_eval.calibration.METRIC_NAMES` (default: all, in that order).
    n_options : array-like of shape (n_items,), optional
        As in :func:`first_eval.calibration.metric_suite`.

    Returns
    -------
    dict of str to (float, float)
        Metric -> (low, high). NaN-safe: resamples where a metric is undefined are left out;
        (nan, nan) if it is undefined on all of them.

    Examples
    --------
    >>> ci = bootstrap_ci([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]] * 20, [0, 0, 1] * 20,
    ...                   n_resamples=200, metrics=["accuracy"])
    >>> lo, hi = ci["accuracy"]
    >>> bool(lo < 1 / 3 < hi)
    True
    """
    _check(n_resamples, seed, level, metrics)
    values = bootstrap_metrics(probs, labels, n_resamples=n_resamples, seed=seed, n_bins=n_bins,
                               scheme=scheme, metrics=metrics, n_options=n_options)
    return {k: _percentile_ci(v, level) for k, v in values.items()}


def paired_bootstrap(probs_a, probs_b, labels, *, n_resamples: int = 1000, seed: int = 0,
                     n_bins: int = 10, scheme: str = "width", level: float = 0.95, metrics=None,
                     n_options=None) -> dict[str, PairedDifference]:
    """Paired bootstrap of metric(A) - metric(B) for two models scored on the same items.

    Both models are evaluated on the same resample indices, so the interval reflects the
    sampling noise of the difference, not of each model separately.

    Parameters
    ----------
    probs_a, probs_b : array-like of shape (n_items, n_options)
        Row i of both is the same item (align by item id first).
    labels : array-like of shape (n_items,)
    n_resamples, seed, n_bins, scheme, level, metrics, n_options
        As in :func:`bootstrap_ci`.

    Returns
    -------
    dict of str to PairedDifference
    """
    from first_eval.calibration.suite import metric_suite

    names = _check(n_resamples, seed, level, metrics)
    _b.check_binning(n_bins, scheme)
    fa = check_forecasts(probs_a, labels, n_options)
    fb = check_forecasts(probs_b, labels, n_options)
    if fa.n != fb.n:
        raise ValueError(f"Expected probs_a and probs_b for the same items, got {fa.n} and {fb.n} rows")
    full_a = metric_suite(fa.probs, fa.labels, n_bins=n_bins, scheme=scheme, n_options=fa.n_options)
    full_b = metric_suite(fb.probs, fb.labels, n_bins=n_bins, scheme=scheme, n_options=fb.n_options)
    engines = [ResampledMetrics(f, n_bins=n_bins, scheme=scheme, metrics=names) for f in (fa, fb)]
    va, vb = _resampled(engines, fa.n, n_resamples, seed)
    out = {}
    for name in names:
        d = va[name] - vb[name]
        d = d[np.isfinite(d)]
        lo, hi = _percentile_ci(d, level)
        b = d.size
        if b:
            p = 2 * min((1 + np.count_nonzero(d <= 0)) / (1 + b), (1 + np.count_nonzero(d >= 0)) / (1 + b))
            p = min(1.0, p)
        else:
            p = float("nan")
        out[name] = PairedDifference(name, float(full_a[name] - full_b[name]), lo, hi, float(p), int(b))
    return out
