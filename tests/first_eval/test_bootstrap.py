"""Bootstrap: vectorized resampled metrics equal plain recomputes; CIs and paired differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from first_eval.bootstrap import (
    PairedDifference,
    bootstrap_ci,
    bootstrap_indices,
    bootstrap_metrics,
    paired_bootstrap,
)
from first_eval.calibration import METRIC_NAMES, metric_suite


def forecasts(n, k=4, *, seed=0, decimals=None, scale=2.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * scale
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if decimals is not None:  # ties in confidence between right and wrong items
        p = np.round(p, decimals)
        p /= p.sum(axis=1, keepdims=True)
    y = np.where(rng.random(n) < 0.6, p.argmax(axis=1), rng.integers(0, k, n))
    return p, y


CASES = {
    "continuous": dict(n=400, k=4, seed=1),
    "ties": dict(n=600, k=3, seed=2, decimals=1),
    "two options": dict(n=150, k=2, seed=3),
    "tiny": dict(n=5, k=3, seed=4),
}


@pytest.mark.parametrize("scheme", ["width", "mass"])
@pytest.mark.parametrize("case", list(CASES))
def test_vectorized_resamples_equal_plain_recomputes(case, scheme):
    p, y = forecasts(**CASES[case])
    n_bins = 7 if case == "ties" else 10
    values = bootstrap_metrics(p, y, n_resamples=5, seed=11, n_bins=n_bins, scheme=scheme)
    idx = bootstrap_indices(len(y), n_resamples=5, seed=11)
    assert list(values) == list(METRIC_NAMES)
    for b in range(5):
        plain = metric_suite(np.take(p, idx[b], axis=0), np.take(y, idx[b]), n_bins=n_bins, scheme=scheme)
        for name in METRIC_NAMES:
            assert values[name][b] == pytest.approx(plain[name], abs=1e-12, nan_ok=True), (name, b)


def test_vectorized_resamples_with_ragged_options():
    p4, y4 = forecasts(300, 4, seed=5)
    p2, y2 = forecasts(100, 2, seed=6)
    p = np.vstack([p4, np.column_stack([p2, np.zeros((100, 2))])])
    y = np.concatenate([y4, y2])
    n_opt = np.r_[np.full(300, 4), np.full(100, 2)]
    values = bootstrap_metrics(p, y, n_resamples=4, seed=3, n_options=n_opt)
    idx = bootstrap_indices(len(y), n_resamples=4, seed=3)
    for b in range(4):
        plain = metric_suite(p[idx[b]], y[idx[b]], n_options=n_opt[idx[b]])
        for name in METRIC_NAMES:
            assert values[name][b] == pytest.approx(plain[name], abs=1e-12, nan_ok=True), name


def test_large_resample_matches_on_a_subset_of_metrics():
    """Several count chunks (n large enough that a chunk holds few resamples)."""
    p, y = forecasts(20000, 4, seed=7, decimals=3)
    names = ["accuracy", "ece", "auroc", "aurc", "acc_at_80", "classwise_ece"]
    values = bootstrap_metrics(p, y, n_resamples=230, seed=5, metrics=names)
    idx = bootstrap_indices(len(y), n_resamples=230, seed=5)
    for b in (0, 104, 105, 229):  # first, across a chunk boundary (chunk = 104), last
        plain = metric_suite(p[idx[b]], y[idx[b]])
        for name in names:
            assert values[name][b] == pytest.approx(plain[name], abs=1e-12), (name, b)


def documented_resamples(n, n_resamples, seed):
    """The resample index rows as the module docstring defines them, drawn here independently."""
    step = max(1, 2**21 // n)
    rows = []
    for j in range(-(-n_resamples // step)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(j,)))
        rows.append(rng.integers(0, n, size=(min(step, n_resamples - j * step), n), dtype=np.int32))
    return np.concatenate(rows)


def test_resample_stream_is_pinned():
    """The index streams are part of the results: these are the values of the first release."""
    idx = bootstrap_indices(1000, n_resamples=3, seed=0)
    assert idx[:, :6].tolist() == [[802, 942, 5, 316, 758, 722], [340, 582, 882, 6, 320, 595],
                                   [759, 747, 779, 151, 786, 511]]
    assert idx[2, -3:].tolist() == [327, 845, 161]
    idx = bootstrap_indices(30000, n_resamples=80, seed=7)       # chunks of 69 resamples
    assert idx[[0, 68, 69, 79], :4].tolist() == [[9161, 23935, 6116, 1592], [24889, 26194, 28591, 22718],
                                                 [20441, 14417, 11970, 1786], [21818, 20162, 10060, 11515]]
    assert np.array_equal(idx, documented_resamples(30000, 80, 7))


@pytest.mark.parametrize("scheme", ["width", "mass"])
def test_values_for_a_fixed_seed_are_the_plain_metrics_on_the_documented_resamples(scheme):
    """Every metric of resample b is metric_suite on the items of the b-th documented draw,
    across a chunk boundary (30,000 items: 69 resamples a chunk)."""
    p, y = forecasts(30000, 4, seed=15, decimals=3)
    values = bootstrap_metrics(p, y, n_resamples=72, seed=7, scheme=scheme)
    idx = documented_resamples(30000, 72, 7)
    for b in (0, 68, 69, 71):
        plain = metric_suite(p[idx[b]], y[idx[b]], scheme=scheme)
        for name in METRIC_NAMES:
            assert values[name][b] == pytest.approx(plain[name], abs=1e-12, nan_ok=True), (name, b)


def test_drawing_a_chunk_a_few_rows_at_a_time_gives_the_same_rows():
    import first_eval.bootstrap as bootstrap

    for n, n_resamples, j, rows_per_draw in ((5, 500, 0, 7), (301, 7000, 1, 3), (14042, 200, 1, 18)):
        whole = bootstrap._chunk_indices(n, n_resamples, 4, j)
        parts = np.concatenate(list(bootstrap._chunk_draws(n, n_resamples, 4, j, rows_per_draw)))
        assert whole.shape[0] > rows_per_draw and np.array_equal(whole, parts), n


def test_a_wrapped_byte_count_is_counted_again(monkeypatch):
    """Counts are kept in bytes; a count above 255 would wrap, which the column totals reveal."""
    import first_eval.bootstrap as bootstrap
    from first_eval.calibration._checks import check_forecasts
    from first_eval.calibration.resampled import ResampledMetrics

    p, y = forecasts(300, seed=16)
    engine = ResampledMetrics(check_forecasts(p, y, None), n_bins=10, scheme="width")
    counts = np.zeros((2, 300), dtype=np.uint8)
    counts[:, 0] = 44                          # 300 copies of item 0, wrapped: 300 - 256
    assert engine(counts)[1] is False
    assert engine(np.ones((2, 300), dtype=np.uint8))[1] is True

    expected = bootstrap_metrics(p, y, n_resamples=20, seed=2)
    real = bootstrap.item_counts

    def wrapping(indices, n, out):             # as if some item had been drawn 256 times more
        real(indices, n, out)
        if out.dtype == np.uint8:
            out[0, 0] -= 1
        return out

    monkeypatch.setattr(bootstrap, "item_counts", wrapping)
    again = bootstrap_metrics(p, y, n_resamples=20, seed=2)
    for name in METRIC_NAMES:
        assert np.array_equal(again[name], expected[name], equal_nan=True), name


def test_smooth_ece_at_small_bandwidths_equals_the_plain_metric():
    """Calibrated forecasts on many items: smooth ECE near and below 0.01, where relplot's
    bisection needs finer grids and the bounds need many DCT terms."""
    rng = np.random.default_rng(17)
    p, _ = forecasts(30000, 4, seed=17, scale=1.5)
    y = (rng.random(30000)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, 3)
    values = bootstrap_metrics(p, y, n_resamples=6, seed=1, metrics=["smooth_ece"])["smooth_ece"]
    idx = bootstrap_indices(30000, n_resamples=6, seed=1)
    assert values.min() < 0.012
    for b in range(6):
        assert values[b] == pytest.approx(metric_suite(p[idx[b]], y[idx[b]])["smooth_ece"], abs=1e-12)


def test_smooth_ece_head_bounds_enclose_the_exact_numerator():
    """The middle test of the bisection: the first DCT terms plus a bound on the rest."""
    from first_eval.calibration import smooth
    from first_eval.calibration._checks import check_forecasts
    from first_eval.calibration.resampled import ResampledMetrics

    p, y = forecasts(5000, 4, seed=18)
    engine = ResampledMetrics(check_forecasts(p, y, None), n_bins=10, scheme="width",
                              metrics=["smooth_ece"])
    c = np.random.default_rng(0).poisson(1.0, size=(5000, 9)).astype(np.float64)
    grids = engine.matrix[engine.blocks["smooth"]] @ c
    cols = smooth._Columns(engine.smooth, grids, c)
    e = smooth.grid_size(1.0)
    sigmas = np.array([0.9, 0.5, 0.25, 0.12, 0.06, 0.03, 0.011])
    col, which = np.meshgrid(np.arange(9), np.arange(sigmas.size))
    low, high = cols.head_bounds(col.ravel(), sigmas, which.ravel())
    for k, (b, i) in enumerate(zip(col.ravel(), which.ravel())):
        transfer, inds, res, _ = smooth._sigma_parts(float(sigmas[i]), e)
        s = scipy_idct(cols.coef()[:, b] * transfer)
        exact = np.abs(s[inds] * (1 - res) + s[inds + 1] * res).sum()
        assert low[k] <= exact <= high[k], (b, sigmas[i])
        if sigmas[i] <= 0.25:                      # tight enough to decide most steps
            assert high[k] - low[k] <= (0.3 if sigmas[i] > 0.2 else 1e-3) * exact, (b, sigmas[i])


def scipy_idct(x):
    import scipy.fft

    return scipy.fft.idct(x, type=1)


def test_same_seed_same_result_and_resamples_are_a_prefix():
    p, y = forecasts(300, seed=8)
    a = bootstrap_ci(p, y, n_resamples=200, seed=4)
    b = bootstrap_ci(p, y, n_resamples=200, seed=4)
    assert a == b
    assert bootstrap_ci(p, y, n_resamples=200, seed=5) != a
    first = bootstrap_indices(300, n_resamples=50, seed=4)
    assert np.array_equal(first, bootstrap_indices(300, n_resamples=200, seed=4)[:50])
    many = bootstrap_metrics(p, y, n_resamples=200, seed=4, metrics=["ece"])["ece"]
    few = bootstrap_metrics(p, y, n_resamples=50, seed=4, metrics=["ece"])["ece"]
    # The same resamples, so the same values — to round-off only: the per-bin sums are matrix
    # products whose BLAS blocking depends on how many resamples share a product, and on some
    # CPUs a value differs in its last bit (2.8e-17 seen on one machine, 0 on another).
    np.testing.assert_allclose(few, many[:50], rtol=0, atol=1e-15)


def test_threads_do_not_change_results(monkeypatch):
    import first_eval.bootstrap as bootstrap

    p, y = forecasts(20000, seed=14)
    threaded = bootstrap_metrics(p, y, n_resamples=220, seed=6, metrics=["ece", "smooth_ece"])
    monkeypatch.setattr(bootstrap, "_MAX_WORKERS", 1)
    serial = bootstrap_metrics(p, y, n_resamples=220, seed=6, metrics=["ece", "smooth_ece"])
    for name in threaded:
        assert np.array_equal(threaded[name], serial[name]), name


def test_intervals_are_sensible():
    p, y = forecasts(2000, seed=9)
    point = metric_suite(p, y)
    ci = bootstrap_ci(p, y, n_resamples=400, seed=0)
    assert list(ci) == list(METRIC_NAMES)
    for name in METRIC_NAMES:
        lo, hi = ci[name]
        assert lo <= hi, name
    for name in ("accuracy", "brier", "nll", "auroc", "aurc", "acc_at_80", "smooth_ece"):
        lo, hi = ci[name]
        assert lo < point[name] < hi, name
    # accuracy: close to the normal approximation
    acc = point["accuracy"]
    half = 1.96 * math.sqrt(acc * (1 - acc) / 2000)
    assert (ci["accuracy"][1] - ci["accuracy"][0]) / 2 == pytest.approx(half, rel=0.15)
    narrow = bootstrap_ci(p, y, n_resamples=400, seed=0, level=0.8, metrics=["accuracy", "ece"])
    for name in ("accuracy", "ece"):
        assert ci[name][0] <= narrow[name][0] <= narrow[name][1] <= ci[name][1]


def test_nan_safe_when_a_metric_is_undefined_on_some_resamples():
    p = np.array([[0.9, 0.1]] * 9 + [[0.6, 0.4]])
    y = np.array([0] * 9 + [1])  # one wrong answer: many resamples miss it
    values = bootstrap_metrics(p, y, n_resamples=300, seed=0, metrics=["auroc", "accuracy"])
    assert np.isnan(values["auroc"]).any() and np.isfinite(values["auroc"]).any()
    lo, hi = bootstrap_ci(p, y, n_resamples=300, seed=0, metrics=["auroc"])["auroc"]
    assert np.isfinite(lo) and np.isfinite(hi)
    lo, hi = bootstrap_ci(p, np.zeros(10, dtype=int), n_resamples=50, metrics="auroc")["auroc"]
    assert math.isnan(lo) and math.isnan(hi)


def test_paired_bootstrap_of_a_model_against_itself():
    p, y = forecasts(500, seed=10)
    diffs = paired_bootstrap(p, p, y, n_resamples=200, seed=1)
    assert list(diffs) == list(METRIC_NAMES)
    for name, d in diffs.items():
        assert isinstance(d, PairedDifference) and d.metric == name
        assert d.difference == 0 and d.ci_low == 0 and d.ci_high == 0, name
        assert d.p_value == 1.0 and d.n_resamples == 200


def test_paired_bootstrap_detects_a_real_difference_and_uses_the_same_resamples():
    p, _ = forecasts(1500, seed=12, scale=1.0)
    rng = np.random.default_rng(0)
    y = (rng.random(1500)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, 3)  # p calibrated
    sharp = p**4 / (p**4).sum(axis=1, keepdims=True)  # same ranking, over-confident
    names = ["accuracy", "ece", "nll", "auroc"]
    diffs = paired_bootstrap(sharp, p, y, n_resamples=300, seed=2, metrics=names)
    full = metric_suite(sharp, y)["ece"] - metric_suite(p, y)["ece"]
    assert diffs["ece"].difference == pytest.approx(full)
    assert diffs["ece"].ci_low > 0 and diffs["ece"].p_value == pytest.approx(2 / 301)
    assert diffs["accuracy"].difference == 0 and diffs["accuracy"].p_value == 1.0
    a = bootstrap_metrics(sharp, y, n_resamples=300, seed=2, metrics=names)
    b = bootstrap_metrics(p, y, n_resamples=300, seed=2, metrics=names)
    d = a["nll"] - b["nll"]
    assert (diffs["nll"].ci_low, diffs["nll"].ci_high) == pytest.approx(tuple(np.quantile(d, [0.025, 0.975])))


def test_paired_p_value_counts_both_tails_with_the_plus_one_correction():
    p, y = forecasts(200, seed=13)
    noisy = np.clip(p + np.random.default_rng(0).normal(0, 0.02, p.shape), 0.001, None)
    noisy /= noisy.sum(axis=1, keepdims=True)
    d = paired_bootstrap(noisy, p, y, n_resamples=199, seed=3, metrics=["brier"])["brier"]
    a = bootstrap_metrics(noisy, y, n_resamples=199, seed=3, metrics=["brier"])["brier"]
    b = bootstrap_metrics(p, y, n_resamples=199, seed=3, metrics=["brier"])["brier"]
    diff = a - b
    expected = min(1.0, 2 * min((1 + (diff <= 0).sum()) / 200, (1 + (diff >= 0).sum()) / 200))
    assert d.p_value == pytest.approx(expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_resamples=0), "Expected n_resamples"),
    (dict(seed=-1), "Expected seed"),
    (dict(level=1.0), "Expected level"),
    (dict(metrics=["ece", "f1"]), "Expected metrics from"),
    (dict(n_bins=0), "Expected n_bins"),
    (dict(scheme="quantile"), "Expected scheme"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    p, y = forecasts(20)
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(p, y, **kwargs)


def test_paired_needs_the_same_items():
    p, y = forecasts(20)
    with pytest.raises(ValueError, match="Expected labels of shape"):
        paired_bootstrap(p, p[:10], y)
