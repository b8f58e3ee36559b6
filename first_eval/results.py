"""Metric rows of a predictions table: one row per (model, dataset), and paired comparisons.

The ``first-eval metrics --json`` schema, computed here once for everything that writes it: the
``metrics`` command (:mod:`first_eval.cli.metrics`, which only parses and prints), the study
runner, :mod:`first_eval.synthetic` and ``first_train``'s evaluation stage.

A row of :func:`compute_results`::

    {"model": str, "dataset": str, "n": int, "accuracy": float, "ece": float, ...,
     "ece_ci": [low, high], ...}            # the *_ci keys only with bootstrap > 0

Every metric of :data:`first_eval.calibration.METRIC_NAMES` is a key; a metric that is undefined
on a group (AUROC when every answer is right) is NaN. A row of :func:`compute_comparisons`::

    {"model_a": str, "model_b": str, "dataset": str, "n": int, "n_resamples": int,
     "differences": {metric: {"difference": float, "ci": [low, high], "p_value": float}}}

NumPy and pandas only, never torch. The metrics core is imported when a function is called, not
with this module, so that the command line's start-up (which imports this module) stays light.
"""

from __future__ import annotations

from typing import Any

from first_eval.errors import UserError

__all__ = ["compute_comparisons", "compute_results"]


def compute_results(frame: Any, *, n_bins: int, scheme: str, bootstrap: int, seed: int) -> list[dict]:
    """Metric rows, one per (model, dataset) of a predictions table.

    Parameters
    ----------
    frame : pandas.DataFrame
        A validated predictions table (:func:`first_eval.predictions.read_predictions` or
        :func:`~first_eval.predictions.to_frame`): one row per (model, dataset, item).
    n_bins : int
        Bins of the binned metrics (ECE, MCE, RMS-CE, ...), at least 1.
    scheme : {"width", "mass"}
        Equal-width or equal-mass bins.
    bootstrap : int
        Bootstrap resamples for 95% percentile CIs of every metric; 0 for none.
    seed : int
        Seed of the bootstrap; the rows are deterministic for a seed.

    Returns
    -------
    list of dict
        One row per (model, dataset) in the table's order: ``model``, ``dataset``, ``n`` (int)
        and every metric of :func:`first_eval.calibration.metric_suite` (float), plus
        ``<metric>_ci = [low, high]`` when ``bootstrap > 0``.

    Raises
    ------
    ValueError
        A bad ``n_bins``, ``scheme``, ``bootstrap`` or ``seed`` (``"Expected ..., got ..."``).

    Examples
    --------
    >>> from first_eval.predictions import to_frame
    >>> frame = to_frame([{"model": "m", "dataset": "d", "id": str(i), "probs": [0.8, 0.2],
    ...                    "label": i % 2} for i in range(4)])
    >>> row, = compute_results(frame, n_bins=10, scheme="width", bootstrap=0, seed=0)
    >>> row["model"], row["n"], row["accuracy"], round(row["ece"], 3)
    ('m', 4, 0.5, 0.3)
    """
    from first_eval.bootstrap import bootstrap_ci
    from first_eval.calibration import metric_suite
    from first_eval.predictions import group_predictions

    results = []
    for group in group_predictions(frame):
        row: dict = {"model": group.model, "dataset": group.dataset}
        suite = metric_suite(group.probs, group.labels, n_bins=n_bins, scheme=scheme, n_options=group.n_options)
        row.update({k: (int(v) if k == "n" else float(v)) for k, v in suite.items()})
        if bootstrap:
            cis = bootstrap_ci(group.probs, group.labels, n_resamples=bootstrap, seed=seed,
                               n_bins=n_bins, scheme=scheme, n_options=group.n_options)
            for name, (lo, hi) in cis.items():
                row[f"{name}_ci"] = [float(lo), float(hi)]
        results.append(row)
    return results


def compute_comparisons(frame: Any, model_a: str, model_b: str, *, n_bins: int, scheme: str,
                        bootstrap: int, seed: int) -> list[dict]:
    """Paired bootstrap of ``model_a`` − ``model_b`` on each dataset both were scored on.

    Parameters
    ----------
    frame : pandas.DataFrame
        A validated predictions table (see :func:`compute_results`).
    model_a, model_b : str
        Model names in ``frame``; the differences are ``metric(model_a) - metric(model_b)``.
    n_bins : int
        Bins of the binned metrics, at least 1.
    scheme : {"width", "mass"}
        Equal-width or equal-mass bins.
    bootstrap : int
        Paired bootstrap resamples (the same items resampled for both models), at least 1.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    list of dict
        One per shared dataset, in ``model_a``'s order: ``model_a``, ``model_b``, ``dataset``,
        ``n`` (the items both were scored on), ``n_resamples`` and ``differences``, a dict
        ``metric -> {"difference", "ci": [low, high], "p_value"}``.

    Raises
    ------
    UserError
        A model not in the table, or no dataset that both models were scored on. The messages
        start with ``--compare:``, the ``first-eval metrics`` flag that passes the two names.
    ValueError
        A bad ``n_bins``, ``scheme``, ``bootstrap`` or ``seed``.

    Examples
    --------
    >>> from first_eval.predictions import to_frame
    >>> rows = [{"model": m, "dataset": "d", "id": str(i), "probs": [p, 1 - p], "label": 0}
    ...         for m, p in (("a", 0.9), ("b", 0.6)) for i in range(5)]
    >>> c, = compute_comparisons(to_frame(rows), "a", "b", n_bins=10, scheme="width",
    ...                          bootstrap=20, seed=0)
    >>> c["n"], round(c["differences"]["ece"]["difference"], 3)
    (5, -0.3)
    """
    from first_eval.bootstrap import paired_bootstrap
    from first_eval.predictions import align_groups, group_predictions

    groups = {(g.model, g.dataset): g for g in group_predictions(frame)}
    models = {m for m, _ in groups}
    for m in (model_a, model_b):
        if m not in models:
            raise UserError(f"--compare: no model {m!r} in the file (models: {', '.join(sorted(models))})")
    datasets = [d for (m, d) in groups if m == model_a and (model_b, d) in groups]
    if not datasets:
        raise UserError(f"--compare: {model_a!r} and {model_b!r} were not scored on a common dataset")
    out = []
    for dataset in datasets:
        pa, pb, labels, n_opts = align_groups(groups[(model_a, dataset)], groups[(model_b, dataset)])
        diffs = paired_bootstrap(pa, pb, labels, n_resamples=bootstrap, seed=seed,
                                 n_bins=n_bins, scheme=scheme, n_options=n_opts)
        out.append({
            "model_a": model_a, "model_b": model_b, "dataset": dataset, "n": int(len(labels)),
            "n_resamples": bootstrap,
            "differences": {name: {"difference": float(d.difference), "ci": [float(d.ci_low), float(d.ci_high)],
                                   "p_value": float(d.p_value)} for name, d in diffs.items()},
        })
    return out
