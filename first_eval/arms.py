"""Seed-aware statistics: metrics of training "arms" with several seed replicas, and their differences.

A study trains several seeds of each student *arm*. In a predictions table a seed replica is a
model named ``<arm>@<seed>`` (``student-ce@0``, ``student-ce@1``, ...); a name without such a
suffix is an arm with one replica (:func:`arm_of`, :func:`seed_of`). Every replica of an arm
scores the same items, so items and seeds are *crossed*, and an arm's metric varies with both:
with the test items drawn (item noise) and with the training seed (seed noise). A CI from one
replica's item bootstrap leaves the seed noise out.

The two-level bootstrap (:func:`two_level_bootstrap`). Resample b

1. draws the items of the item bootstrap's resample b (:func:`first_eval.bootstrap.bootstrap_indices`
   for (seed, n, b)), the same items for every replica: each replica is scored on them with the
   vectorized engine of :func:`first_eval.bootstrap.bootstrap_metrics`;
2. draws S replicas with replacement from the S replicas: row b of :func:`seed_indices`, that is
   ``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5EED, tag))).integers(0, S,
   size=(n_resamples, S))`` (one draw of the whole matrix, so the first 100 rows are those of a
   1000-resample run; the item chunks use ``spawn_key=(j,)``, a different stream);
3. averages the metric over the drawn replicas (a NaN on a drawn replica makes the average NaN;
   the percentile CIs leave such resamples out, as everywhere in :mod:`first_eval.bootstrap`).

The point estimate is the mean over the replicas of the full-sample metric. With one replica
this is the item bootstrap exactly (bit for bit). With few seeds the seed level is a rough
correction: resampling S values with replacement gives their mean a variance of
``(S - 1) / S * s**2 / S``, a little below ``s**2 / S`` (Davison & Hinkley 1997, section 3.8, on
resampling at more than one level).

Differences (:func:`arm_difference`) are paired over items (both arms on the same item
resample) with the seeds of A and B drawn independently (``tag`` 0 for A, 1 for B; so A's draws
are those of its own :func:`two_level_bootstrap`). The p-value follows
:func:`first_eval.bootstrap.paired_bootstrap`; ``se`` is the bootstrap standard error of the
difference and ``mde`` the minimum detectable difference at that standard error
(:func:`min_detectable`). :func:`holm` and :func:`holm_adjust` correct p-values for testing one
comparison on several datasets.

The row schemas extend those of :mod:`first_eval.results`. A row of :func:`compute_arm_results`::

    {"model": arm, "dataset": str, "n": int, "n_seeds": int, "seeds": [int, ...],
     "accuracy": float, ..., "accuracy_ci": [low, high], ...,      # *_ci only with bootstrap > 0
     "accuracy_seeds": [float, ...], "accuracy_seed_sd": float | None, ...}

and a row of :func:`compute_arm_comparisons`::

    {"model_a": arm, "model_b": arm, "dataset": str, "n": int, "n_resamples": int,
     "n_seeds_a": int, "n_seeds_b": int,
     "differences": {metric: {"difference", "ci": [low, high], "p_value", "se", "mde"}}}

NumPy and pandas only, never torch.
"""

from __future__ import annotations

import re
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

from first_eval.errors import UserError

__all__ = [
    "SEED_STREAM", "arm_difference", "arm_of", "compute_arm_comparisons", "compute_arm_results",
    "holm", "holm_adjust", "min_detectable", "seed_indices", "seed_of", "two_level_bootstrap",
]

#: First entry of the spawn key of the seed-level generator: ``SeedSequence(seed,
#: spawn_key=(SEED_STREAM, tag))``.
SEED_STREAM = 0x5EED

_REPLICA = re.compile(r"^(.+)@([0-9]+)$")


# ---------------------------------------------------------------------------- names
def arm_of(model: str) -> str:
    """The arm of a model name: the text before the last ``@`` when an integer follows it.

    Parameters
    ----------
    model : str
        A model name, ``<arm>@<seed>`` for a seed replica (the seed is ASCII digits).

    Returns
    -------
    str
        ``<arm>``, or ``model`` itself when it is not a seed replica (no ``@``, a non-integer
        after the last one, or nothing before it).

    Examples
    --------
    >>> arm_of("student-ce@2"), arm_of("student-ce"), arm_of("a@b@1"), arm_of("x@v2")
    ('student-ce', 'student-ce', 'a@b', 'x@v2')
    """
    match = _REPLICA.match(model)
    return match.group(1) if match else model


def seed_of(model: str) -> int | None:
    """The seed of a seed replica ``<arm>@<seed>``, or None for a plain model name.

    Examples
    --------
    >>> seed_of("student-ce@07"), seed_of("student-ce")
    (7, None)
    """
    match = _REPLICA.match(model)
    return int(match.group(2)) if match else None


# ---------------------------------------------------------------------------- small statistics
def min_detectable(se: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference of a two-sided z-test: ``(z_{1-alpha/2} + z_power) * se``.

    The smallest true difference that a test at level ``alpha`` would detect with probability
    ``power``, when the estimate is about normal with standard error ``se``.

    Parameters
    ----------
    se : float
        Standard error of the difference (non-negative; NaN gives NaN).
    alpha : float, default=0.05
        Two-sided significance level, in (0, 1).
    power : float, default=0.8
        In (0, 1).

    Returns
    -------
    float
        About ``2.8016 * se`` at the defaults.

    Examples
    --------
    >>> round(min_detectable(0.01), 6)
    0.028016
    """
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"Expected alpha in (0, 1), got {alpha!r}")
    if not (isinstance(power, (int, float)) and 0 < power < 1):
        raise ValueError(f"Expected power in (0, 1), got {power!r}")
    se = float(se)
    if se < 0:
        raise ValueError(f"Expected a non-negative standard error, got {se!r}")
    z = NormalDist()
    return (z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * se


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    With the m finite p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of
    ``p_(i)`` is ``max_{j <= i} min(1, (m - j + 1) * p_(j))`` (Holm 1979); rejecting where it is
    below alpha controls the family-wise error rate at alpha.

    Parameters
    ----------
    p_values : sequence of float
        In [0, 1]; NaN entries (an undefined test) are passed through and not counted in m.

    Returns
    -------
    list of float

    Examples
    --------
    >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(list(p_values), dtype=np.float64).reshape(-1)
    finite = ~np.isnan(p)
    if ((p[finite] < 0) | (p[finite] > 1)).any():
        raise ValueError(f"Expected p-values in [0, 1] or NaN, got {p_values!r}")
    out = p.copy()
    where = np.flatnonzero(finite)
    m = where.size
    if m:
        order = np.argsort(p[where], kind="stable")
        scaled = np.minimum(1.0, (m - np.arange(m)) * p[where][order])
        out[where[order]] = np.maximum.accumulate(scaled)
    return [float(v) for v in out]


# ---------------------------------------------------------------------------- bootstrap
def seed_indices(n_seeds: int, *, n_resamples: int = 1000, seed: int = 0, tag: int = 0) -> np.ndarray:
    """The replicas each resample of :func:`two_level_bootstrap` draws, shape (n_resamples, n_seeds).

    ``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SEED_STREAM, tag)))
    .integers(0, n_seeds, size=(n_resamples, n_seeds))``: row b is resample b's draw of
    ``n_seeds`` replica positions with replacement. ``tag`` separates independent draws on the
    same seed (0 for arm A, 1 for arm B in :func:`arm_difference`).

    Examples
    --------
    >>> seed_indices(3, n_resamples=2, seed=0).shape
    (2, 3)
    """
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise ValueError(f"Expected n_seeds as an integer >= 1, got {n_seeds!r}")
    from first_eval.bootstrap import _check

    _check(n_resamples, seed, 0.95, None)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(SEED_STREAM, int(tag))))
    return rng.integers(0, int(n_seeds), size=(int(n_resamples), int(n_seeds)))


def _forecasts(probs_by_seed, labels, n_options, what: str) -> list:
    """Validated forecasts of each replica, all on the same n items."""
    from first_eval.calibration._checks import check_forecasts

    if isinstance(probs_by_seed, np.ndarray) and probs_by_seed.ndim != 3:
        raise ValueError(f"Expected {what} as a list of (n_items, n_options) arrays, one per seed "
                         f"replica, got an array of shape {probs_by_seed.shape}")
    replicas = [check_forecasts(p, labels, n_options) for p in probs_by_seed]
    if not replicas:
        raise ValueError(f"Expected {what} with at least one seed replica, got none")
    return replicas   # each checked against the labels: all on the same n items


def _replica_mean(values: list[np.ndarray], draws: np.ndarray | None) -> np.ndarray:
    """Per-resample mean over the drawn replicas: ``mean_s values[draws[b, s]][b]``."""
    if draws is None:  # one replica: its values, untouched
        return values[0]
    stacked = np.stack(values)                                    # (S, B)
    return stacked[draws, np.arange(stacked.shape[1])[:, None]].mean(axis=1)


def _two_level(groups: list[list], *, n_resamples, seed, n_bins, scheme,
               names) -> list[dict[str, np.ndarray]]:
    """Two-level resampled values of each group of replicas, all on the same item resamples.

    Group g's seed draws use ``tag=g``. Returns, per group, metric -> (B,).
    """
    from first_eval.bootstrap import _resampled
    from first_eval.calibration.resampled import ResampledMetrics

    engines = [ResampledMetrics(f, n_bins=n_bins, scheme=scheme, metrics=names)
               for replicas in groups for f in replicas]
    values = _resampled(engines, groups[0][0].n, n_resamples, seed)
    out, start = [], 0
    for tag, replicas in enumerate(groups):
        mine = values[start:start + len(replicas)]
        start += len(replicas)
        draws = None if len(replicas) == 1 else seed_indices(
            len(replicas), n_resamples=n_resamples, seed=seed, tag=tag)
        out.append({name: _replica_mean([v[name] for v in mine], draws) for name in names})
    return out


def two_level_bootstrap(probs_by_seed, labels, *, n_resamples: int = 1000, seed: int = 0,
                        n_bins: int = 10, scheme: str = "width", metrics=None,
                        n_options=None) -> dict[str, np.ndarray]:
    """Each metric of an arm on each two-level resample (items, then seed replicas).

    Resample b takes the item bootstrap's items for b (the same for every replica), draws
    ``S = len(probs_by_seed)`` replicas with replacement (row b of :func:`seed_indices` with
    ``tag=0``) and averages the metric over them. With one replica this equals
    :func:`first_eval.bootstrap.bootstrap_metrics` exactly. The matching point estimate is the
    mean over the replicas of the full-sample metric.

    Parameters
    ----------
    probs_by_seed : sequence of array-like of shape (n_items, n_options)
        One array per seed replica; row i of each is the same item (align by item id first).
    labels : array-like of shape (n_items,)
    n_resamples : int, default=1000
    seed : int, default=0
        Seed of both levels; the same seed gives the same values.
    n_bins : int, default=10
    scheme : {"width", "mass"}, default="width"
    metrics : sequence of str, optional
        Subset of :data:`first_eval.calibration.METRIC_NAMES` (default: all, in that order).
    n_options : array-like of shape (n_items,), optional
        As in :func:`first_eval.calibration.metric_suite` (shared by the replicas).

    Returns
    -------
    dict of str to ndarray of shape (n_resamples,)
        NaN where a metric is undefined on a drawn replica's resample (AUROC when all its
        answers are right or all wrong).

    Examples
    --------
    >>> p = [[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]] * 10
    >>> v = two_level_bootstrap([p, p], [0, 0, 1] * 10, n_resamples=50, metrics=["accuracy"])
    >>> v["accuracy"].shape
    (50,)
    """
    from first_eval.bootstrap import _check
    from first_eval.calibration import binning as _b

    names = _check(n_resamples, seed, 0.95, metrics)
    _b.check_binning(n_bins, scheme)
    replicas = _forecasts(probs_by_seed, labels, n_options, "probs_by_seed")
    return _two_level([replicas], n_resamples=n_resamples, seed=seed,
                      n_bins=n_bins, scheme=scheme, names=names)[0]


def _full_sample(replicas, n_bins, scheme) -> list[dict]:
    from first_eval.calibration import metric_suite

    return [metric_suite(f.probs, f.labels, n_bins=n_bins, scheme=scheme, n_options=f.n_options)
            for f in replicas]


def _p_value(d: np.ndarray) -> float:
    """The two-sided +1 p-value of :func:`first_eval.bootstrap.paired_bootstrap` (finite d)."""
    b = d.size
    if not b:
        return float("nan")
    p = 2 * min((1 + np.count_nonzero(d <= 0)) / (1 + b), (1 + np.count_nonzero(d >= 0)) / (1 + b))
    return float(min(1.0, p))


def arm_difference(probs_a_by_seed, probs_b_by_seed, labels, *, n_resamples: int = 1000,
                   seed: int = 0, n_bins: int = 10, scheme: str = "width", level: float = 0.95,
                   power: float = 0.8, metrics=None, n_options=None) -> dict[str, dict]:
    """Two-level bootstrap of metric(arm A) − metric(arm B), paired over items.

    Both arms are scored on the same item resamples; the seed replicas of A and of B are drawn
    independently (:func:`seed_indices` with ``tag`` 0 and 1). With one replica each this is
    :func:`first_eval.bootstrap.paired_bootstrap` (the same differences, CI and p-value).

    Parameters
    ----------
    probs_a_by_seed, probs_b_by_seed : sequence of array-like of shape (n_items, n_options)
        Each arm's seed replicas; row i of every array is the same item.
    labels : array-like of shape (n_items,)
    n_resamples, seed, n_bins, scheme, metrics, n_options
        As in :func:`two_level_bootstrap`.
    level : float, default=0.95
        Coverage of the percentile interval; ``alpha = 1 - level`` for ``mde``.
    power : float, default=0.8
        Power of ``mde``.

    Returns
    -------
    dict of str to dict
        Metric -> ``difference`` (mean over A's replicas minus mean over B's, full sample),
        ``ci`` ([low, high], percentile), ``p_value`` (two-sided, ``min(1, 2 * min((1 + #{d* <=
        0}) / (1 + B), (1 + #{d* >= 0}) / (1 + B)))`` over the B finite resampled differences),
        ``se`` (their standard deviation, ddof=1; NaN with fewer than two), ``mde``
        (:func:`min_detectable` of ``se`` at ``alpha = 1 - level`` and ``power``),
        ``n_seeds_a``, ``n_seeds_b``.

    Examples
    --------
    >>> p, q = [[0.9, 0.1], [0.4, 0.6]] * 10, [[0.6, 0.4], [0.6, 0.4]] * 10
    >>> d = arm_difference([p], [q, q], [0, 1] * 10, n_resamples=50, metrics=["accuracy"])
    >>> d["accuracy"]["difference"], d["accuracy"]["n_seeds_b"]
    (0.5, 2)
    """
    from first_eval.bootstrap import _check, _percentile_ci
    from first_eval.calibration import binning as _b

    names = _check(n_resamples, seed, level, metrics)
    _b.check_binning(n_bins, scheme)
    min_detectable(0.0, alpha=1 - level, power=power)   # check power before the work
    fa = _forecasts(probs_a_by_seed, labels, n_options, "probs_a_by_seed")
    fb = _forecasts(probs_b_by_seed, labels, n_options, "probs_b_by_seed")
    full_a, full_b = _full_sample(fa, n_bins, scheme), _full_sample(fb, n_bins, scheme)
    va, vb = _two_level([fa, fb], n_resamples=n_resamples, seed=seed,
                        n_bins=n_bins, scheme=scheme, names=names)
    out = {}
    for name in names:
        point = np.mean([s[name] for s in full_a]) - np.mean([s[name] for s in full_b])
        d = va[name] - vb[name]
        d = d[np.isfinite(d)]
        lo, hi = _percentile_ci(d, level)
        se = float(np.std(d, ddof=1)) if d.size > 1 else float("nan")
        out[name] = {
            "difference": float(point), "ci": [float(lo), float(hi)], "p_value": _p_value(d),
            "se": se, "mde": min_detectable(se, alpha=1 - level, power=power),
            "n_seeds_a": len(fa), "n_seeds_b": len(fb),
        }
    return out


# ---------------------------------------------------------------------------- tables
def _arm_groups(frame) -> dict[tuple[str, str], list]:
    """(arm, dataset) -> its replicas' PredictionGroups sorted by seed, in table order of first
    appearance; UserError for an arm that has both a plain replica and seed replicas."""
    from first_eval.predictions import group_predictions

    arms: dict[tuple[str, str], list] = {}
    for group in group_predictions(frame):
        arms.setdefault((arm_of(group.model), group.dataset), []).append(group)
    for (arm, dataset), groups in arms.items():
        seeds = [seed_of(g.model) for g in groups]
        if len(groups) > 1 and None in seeds:
            raise UserError(f"arm {arm!r} on dataset {dataset!r} has both a plain model {arm!r} and "
                            f"seed replicas ({', '.join(g.model for g in groups if seed_of(g.model) is not None)})")
        if len(set(seeds)) < len(seeds):
            dup = sorted(g.model for g in groups)
            raise UserError(f"arm {arm!r} on dataset {dataset!r} has two replicas of one seed ({', '.join(dup)})")
        groups.sort(key=lambda g: seed_of(g.model) or 0)
    return arms


def _gather(groups: list, ids: np.ndarray, arm: str, dataset: str):
    """The replicas' probs at ``ids`` (zero-padded to a common width), with the labels and
    option counts of the first; UserError where a replica lacks an item or disagrees on a label."""
    width = max(g.probs.shape[1] for g in groups)
    first = groups[0]
    pos0 = {item: i for i, item in enumerate(first.ids)}
    i0 = np.array([pos0[item] for item in ids], dtype=np.int64)
    labels, n_opts = first.labels[i0], first.n_options[i0]
    probs = []
    for g in groups:
        pos = {item: i for i, item in enumerate(g.ids)}
        idx = np.array([pos[item] for item in ids], dtype=np.int64)
        if not np.array_equal(g.labels[idx], labels):
            k = int(np.flatnonzero(g.labels[idx] != labels)[0])
            raise UserError(f"item {ids[k]!r} has label {labels[k]} for {first.model!r} but "
                            f"{g.labels[idx[k]]} for {g.model!r} on dataset {dataset!r} (arm {arm!r})")
        p = np.zeros((len(ids), width))
        p[:, : g.probs.shape[1]] = g.probs[idx]
        probs.append(p)
    return probs, labels, n_opts


def _arm_items(groups: list, arm: str, dataset: str):
    """An arm's replicas on their common items, in the first replica's order; UserError unless
    every replica was scored on the same item ids."""
    first = groups[0]
    if len(groups) == 1:
        return [first.probs], first.labels, first.n_options
    ids = set(first.ids)
    for g in groups[1:]:
        if set(g.ids) != ids:
            missing = sorted(ids - set(g.ids))[:3] or sorted(set(g.ids) - ids)[:3]
            raise UserError(f"arm {arm!r} on dataset {dataset!r}: replicas {first.model!r} ({first.n} items) "
                            f"and {g.model!r} ({g.n} items) were not scored on the same items "
                            f"(e.g. {', '.join(repr(m) for m in missing)})")
    return _gather(groups, first.ids, arm, dataset)


def _seeds(groups: list) -> list[int]:
    return [s for s in (seed_of(g.model) for g in groups) if s is not None]


def compute_arm_results(frame: Any, *, n_bins: int, scheme: str, bootstrap: int, seed: int) -> list[dict]:
    """Metric rows, one per (arm, dataset) of a predictions table, over the arm's seed replicas.

    Parameters
    ----------
    frame : pandas.DataFrame
        A validated predictions table; models ``<arm>@<seed>`` are replicas of ``<arm>``.
    n_bins : int
        Bins of the binned metrics, at least 1.
    scheme : {"width", "mass"}
        Equal-width or equal-mass bins.
    bootstrap : int
        Two-level bootstrap resamples for 95% percentile CIs (:func:`two_level_bootstrap`);
        0 for none.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    list of dict
        One row per (arm, dataset), in the table's order of first appearance: ``model`` (the
        arm), ``dataset``, ``n``, ``n_seeds``, ``seeds`` (sorted; [] for a plain model), every
        metric (the mean over the replicas), ``<metric>_ci`` (with ``bootstrap > 0``), then
        ``<metric>_seeds`` (each replica's value, in ``seeds`` order) and ``<metric>_seed_sd``
        (their standard deviation, ddof=1; None for one replica). For one replica the metrics
        and CIs are those of :func:`first_eval.results.compute_results`.

    Raises
    ------
    UserError
        (a ValueError) Replicas of an arm scored on different items or with different labels,
        or an arm with both a plain model and seed replicas; the message names the arm and
        dataset.
    ValueError
        A bad ``n_bins``, ``scheme``, ``bootstrap`` or ``seed``.

    Examples
    --------
    >>> from first_eval.predictions import to_frame
    >>> frame = to_frame([{"model": f"m@{s}", "dataset": "d", "id": str(i), "label": i % 2,
    ...                    "probs": [0.2, 0.8] if s and i == 0 else [0.8, 0.2]}
    ...                   for s in (0, 1) for i in range(4)])
    >>> row, = compute_arm_results(frame, n_bins=10, scheme="width", bootstrap=0, seed=0)
    >>> row["model"], row["seeds"], row["accuracy"], row["accuracy_seeds"]
    ('m', [0, 1], 0.375, [0.5, 0.25])
    """
    from first_eval.bootstrap import _percentile_ci
    from first_eval.calibration import METRIC_NAMES
    from first_eval.calibration._checks import check_forecasts

    rows = []
    for (arm, dataset), groups in _arm_groups(frame).items():
        probs, labels, n_opts = _arm_items(groups, arm, dataset)
        replicas = [check_forecasts(p, labels, n_opts) for p in probs]
        suites = _full_sample(replicas, n_bins, scheme)
        row: dict = {"model": arm, "dataset": dataset, "n": int(len(labels)),
                     "n_seeds": len(groups), "seeds": _seeds(groups)}
        per_seed = {name: [float(s[name]) for s in suites] for name in METRIC_NAMES}
        row.update({name: float(np.mean(v)) for name, v in per_seed.items()})
        if bootstrap:
            values = two_level_bootstrap(probs, labels, n_resamples=bootstrap, seed=seed,
                                         n_bins=n_bins, scheme=scheme, n_options=n_opts)
            for name, v in values.items():
                lo, hi = _percentile_ci(v, 0.95)
                row[f"{name}_ci"] = [float(lo), float(hi)]
        # Mean confidence and confidence − accuracy (over-confidence when > 0): item means, so
        # their two-level resamples are the replicas' item means on the same resamples.
        conf = np.stack([f.probs.max(axis=1) for f in replicas])                     # (S, n)
        gap = conf - np.stack([(f.probs.argmax(axis=1) == f.labels) for f in replicas])
        per_seed["mean_confidence"] = conf.mean(axis=1).tolist()
        per_seed["confidence_gap"] = gap.mean(axis=1).tolist()
        row["mean_confidence"] = float(conf.mean())
        row["confidence_gap"] = float(gap.mean())
        if bootstrap:
            from first_eval.bootstrap import bootstrap_indices

            idx = bootstrap_indices(len(labels), n_resamples=bootstrap, seed=seed)      # (B, n)
            draws = seed_indices(len(replicas), n_resamples=bootstrap, seed=seed, tag=0)  # (B, S)
            rows_b = np.arange(bootstrap)[:, None]
            for name, values in (("mean_confidence", conf), ("confidence_gap", gap)):
                item_means = np.stack([v[idx].mean(axis=1) for v in values])             # (S, B)
                resampled = item_means[draws, rows_b].mean(axis=1)
                lo, hi = _percentile_ci(resampled, 0.95)
                row[f"{name}_ci"] = [float(lo), float(hi)]
        for name, v in per_seed.items():
            row[f"{name}_seeds"] = v
            row[f"{name}_seed_sd"] = float(np.std(v, ddof=1)) if len(v) > 1 else None
        rows.append(row)
    return rows


def compute_arm_comparisons(frame: Any, arm_a: str, arm_b: str, *, n_bins: int, scheme: str,
                            bootstrap: int, seed: int, level: float = 0.95,
                            power: float = 0.8) -> list[dict]:
    """Two-level paired bootstrap of ``arm_a`` − ``arm_b`` on each dataset both were scored on.

    Parameters
    ----------
    frame : pandas.DataFrame
        A validated predictions table; models ``<arm>@<seed>`` are replicas of ``<arm>``.
    arm_a, arm_b : str
        Arm names (:func:`arm_of`); the differences are ``metric(arm_a) - metric(arm_b)``.
    n_bins : int
        Bins of the binned metrics, at least 1.
    scheme : {"width", "mass"}
        Equal-width or equal-mass bins.
    bootstrap : int
        Resamples (the same items for every replica of both arms), at least 1.
    seed : int
        Seed of the bootstrap.
    level : float, default=0.95
        Coverage of the CIs.
    power : float, default=0.8
        Power of the minimum detectable difference ``mde``.

    Returns
    -------
    list of dict
        One per shared dataset, in ``arm_a``'s order: ``model_a``, ``model_b`` (the arms),
        ``dataset``, ``n`` (the item ids every replica of both arms was scored on, in the order
        of ``arm_a``'s first replica), ``n_resamples``, ``n_seeds_a``, ``n_seeds_b`` and
        ``differences``, ``metric -> {"difference", "ci", "p_value", "se", "mde"}`` (see
        :func:`arm_difference`). With one replica each, ``difference``, ``ci`` and ``p_value``
        are those of :func:`first_eval.results.compute_comparisons`.

    Raises
    ------
    UserError
        An arm not in the table, no dataset that both arms were scored on, no item shared by
        all replicas, or a shared item with different labels.
    ValueError
        A bad ``n_bins``, ``scheme``, ``bootstrap``, ``seed``, ``level`` or ``power``.
    """
    arms = _arm_groups(frame)
    names = {a for a, _ in arms}
    for a in (arm_a, arm_b):
        if a not in names:
            raise UserError(f"no arm {a!r} in the table (arms: {', '.join(sorted(names))})")
    datasets = [d for (a, d) in arms if a == arm_a and (arm_b, d) in arms]
    if not datasets:
        raise UserError(f"arms {arm_a!r} and {arm_b!r} were not scored on a common dataset")
    out = []
    for dataset in datasets:
        ga, gb = arms[(arm_a, dataset)], arms[(arm_b, dataset)]
        groups = ga + gb
        shared = set.intersection(*(set(g.ids) for g in groups))
        ids = np.array([item for item in ga[0].ids if item in shared], dtype=object)
        if len(ids) == 0:
            raise UserError(f"arms {arm_a!r} and {arm_b!r} share no item ids (over all their replicas) "
                            f"on dataset {dataset!r}")
        probs, labels, n_opts = _gather(groups, ids, f"{arm_a}/{arm_b}", dataset)
        diffs = arm_difference(probs[:len(ga)], probs[len(ga):], labels, n_resamples=bootstrap,
                               seed=seed, n_bins=n_bins, scheme=scheme, level=level, power=power,
                               n_options=n_opts)
        out.append({
            "model_a": arm_a, "model_b": arm_b, "dataset": dataset, "n": int(len(labels)),
            "n_resamples": bootstrap, "n_seeds_a": len(ga), "n_seeds_b": len(gb),
            "differences": {name: {k: d[k] for k in ("difference", "ci", "p_value", "se", "mde")}
                            for name, d in diffs.items()},
        })
    return out


def holm_adjust(comparisons: list[dict], metrics: Sequence[str] = ("accuracy", "ece")) -> None:
    """Add Holm-adjusted p-values, ``p_holm``, to comparison rows, in place.

    A family is one (``model_a``, ``model_b``, metric) over the datasets it was compared on:
    each ``differences[metric]`` of the family gets ``p_holm`` from :func:`holm` of the family's
    ``p_value`` entries. Metrics a row does not have are skipped.

    Parameters
    ----------
    comparisons : list of dict
        Rows of :func:`compute_arm_comparisons` or :func:`first_eval.results.compute_comparisons`.
    metrics : sequence of str, default=("accuracy", "ece")
        The metrics to adjust, each its own family.

    Examples
    --------
    >>> rows = [{"model_a": "a", "model_b": "b", "dataset": d,
    ...          "differences": {"ece": {"p_value": p}}} for d, p in (("x", 0.01), ("y", 0.04))]
    >>> holm_adjust(rows, metrics=["ece"])
    >>> [r["differences"]["ece"]["p_holm"] for r in rows]
    [0.02, 0.04]
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    families: dict[tuple, list[dict]] = {}
    for row in comparisons:
        for name in metrics:
            entry = row["differences"].get(name)
            if entry is not None:
                families.setdefault((row["model_a"], row["model_b"], name), []).append(entry)
    for entries in families.values():
        for entry, p in zip(entries, holm([e["p_value"] for e in entries])):
            entry["p_holm"] = p
