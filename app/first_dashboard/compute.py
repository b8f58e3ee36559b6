"""Cached computations the views need, keyed by strings so that a rerun hashes nothing large.

Every function here reads arrays through :mod:`first_dashboard.data` (cached) and calls the
toolkit's own metrics (:mod:`first_eval.calibration`, :mod:`first_eval.bootstrap`) with each item's
option count (``n_options``, as ``first-eval metrics`` passes it), so the dashboard shows the
numbers ``first-eval metrics`` would print — on ragged (zero-padded) tables too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from first_dashboard.data import GroupArrays, RunRef, group_arrays

LETTERS = "ABCDEFGHIJ"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` over each row's present options; zero (padded) options stay 0.

    Parameters
    ----------
    probs : ndarray of shape (n_items, n_options)
    temperature : float
        ``T > 1`` softens (less confident), ``T < 1`` sharpens.

    Examples
    --------
    >>> apply_temperature(np.array([[0.5, 0.5, 0.0]]), 2.0).tolist()
    [[0.5, 0.5, 0.0]]
    """
    if not temperature > 0:
        raise ValueError(f"Expected a temperature > 0, got {temperature}")
    p = np.asarray(probs, dtype=np.float64)
    present = p > 0
    with np.errstate(divide="ignore"):
        z = np.where(present, np.log(np.where(present, p, 1.0)) / temperature, -np.inf)
    z -= z.max(axis=1, keepdims=True)
    e = np.where(present, np.exp(z), 0.0)
    return e / e.sum(axis=1, keepdims=True)


def _group(ref: RunRef, model: str, dataset: str) -> GroupArrays:
    g = group_arrays(*ref.key, model, dataset)
    if g is None:
        raise KeyError(f"no predictions for {model!r} on {dataset!r}")
    return g


@st.cache_data(show_spinner=False, max_entries=256)
def reliability(ref: RunRef, model: str, dataset: str, n_bins: int, scheme: str, temperature: float = 1.0):
    """(ReliabilityData, ECE) of one model on one dataset, at ``temperature`` (1 = as scored)."""
    from first_eval.calibration import expected_calibration_error, reliability_diagram

    g = _group(ref, model, dataset)
    probs = g.probs if temperature == 1.0 else apply_temperature(g.probs, temperature)
    data = reliability_diagram(probs, g.labels, n_bins=n_bins, scheme=scheme)
    return data, float(expected_calibration_error(probs, g.labels, n_bins=n_bins, scheme=scheme))


@st.cache_data(show_spinner=False, max_entries=256)
def suite(ref: RunRef, model: str, dataset: str, n_bins: int, scheme: str, temperature: float = 1.0) -> dict:
    """The full metric suite (``first_eval.calibration.metric_suite``) at ``temperature``."""
    from first_eval.calibration import metric_suite

    g = _group(ref, model, dataset)
    probs = g.probs if temperature == 1.0 else apply_temperature(g.probs, temperature)
    values = metric_suite(probs, g.labels, n_bins=n_bins, scheme=scheme, n_options=g.n_options)
    return {k: float(v) for k, v in values.items()}


@st.cache_data(show_spinner=False, max_entries=64)
def fitted_temperature(ref: RunRef, model: str, dataset: str) -> float:
    """The NLL-optimal temperature on these very items (in-sample: optimistic, for orientation)."""
    from first_eval.calibrators import TemperatureScaling

    g = _group(ref, model, dataset)
    return float(TemperatureScaling().fit(g.probs, g.labels).temperature_)


def aligned(a: GroupArrays, b: GroupArrays) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (ia, ib) of the item ids both groups hold, in ``a``'s order."""
    common, ia, ib = np.intersect1d(a.ids, b.ids, assume_unique=True, return_indices=True)
    order = np.argsort(ia, kind="stable")
    return ia[order], ib[order]


@st.cache_data(show_spinner="Paired bootstrap…", max_entries=64)
def paired(ref_a: RunRef, model_a: str, ref_b: RunRef, model_b: str, dataset: str, n_resamples: int,
           n_bins: int, scheme: str, seed: int = 0) -> pd.DataFrame:
    """Paired bootstrap of a − b on their shared items: one row per metric."""
    from first_eval.bootstrap import paired_bootstrap

    a, b = _group(ref_a, model_a, dataset), _group(ref_b, model_b, dataset)
    ia, ib = aligned(a, b)
    if len(ia) == 0:
        return pd.DataFrame(columns=["metric", "difference", "ci_low", "ci_high", "p_value"])
    if not np.array_equal(a.labels[ia], b.labels[ib]):
        raise ValueError(f"{model_a!r} and {model_b!r} disagree on the gold label of shared items of {dataset!r}")
    if not np.array_equal(a.n_options[ia], b.n_options[ib]):
        raise ValueError(f"{model_a!r} and {model_b!r} disagree on the option count of shared items of {dataset!r}")
    width = max(a.probs.shape[1], b.probs.shape[1])
    pa = np.zeros((len(ia), width))
    pb = np.zeros((len(ia), width))
    pa[:, : a.probs.shape[1]] = a.probs[ia]
    pb[:, : b.probs.shape[1]] = b.probs[ib]
    diffs = paired_bootstrap(pa, pb, a.labels[ia], n_resamples=n_resamples, seed=seed, n_bins=n_bins, scheme=scheme,
                             n_options=a.n_options[ia])
    return pd.DataFrame([{"metric": name, "difference": float(d.difference), "ci_low": float(d.ci_low),
                          "ci_high": float(d.ci_high), "p_value": float(d.p_value)} for name, d in diffs.items()])


def format_probs(probs: np.ndarray, n_options: np.ndarray) -> list[str]:
    """``"A 0.71 · B 0.20 · …"`` per row, over the row's real options."""
    out = []
    for row, k in zip(np.round(probs, 3), n_options):
        out.append(" · ".join(f"{LETTERS[j]} {row[j]:.3f}" for j in range(int(k))))
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV for download; text cells that a spreadsheet would run as a formula get a leading quote.

    Examples
    --------
    >>> csv_bytes(pd.DataFrame({"q": ["=1+1", "ok"]})).decode().splitlines()
    ['q', "'=1+1", 'ok']
    """
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v[:1] in _FORMULA_START else v)
    return out.to_csv(index=False).encode("utf-8")
