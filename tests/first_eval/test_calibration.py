"""Calibration core: hand-computed values, independent references, invariants over all metrics."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from first_eval.calibration import (
    METRIC_DIRECTION,
    METRIC_NAMES,
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
    metric_suite,
    nll_loss,
    reliability_diagram,
    rms_calibration_error,
    smooth_calibration_error,
    wilson_interval,
)
from first_eval.calibration.binning import width_bin_index


def random_forecasts(n, k=4, *, seed=0, scale=2.0, calibrated=False):
    """Softmax of Gaussian logits; labels uniform, or drawn from the forecasts when calibrated."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * scale
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if calibrated:
        y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, k - 1)
    else:
        y = rng.integers(0, k, n)
    return p, y


def top_label(p, y):
    pred = p.argmax(axis=1)
    return p.max(axis=1), (pred == y).astype(float)


# --------------------------------------------------------------------------- hand-computed
def design_example():
    """100 items at confidence 0.2 (40 right) + 100 at exactly 0.3 (10 right), 5 options."""
    p = np.array([[0.2] * 5] * 100 + [[0.3, 0.25, 0.25, 0.2, 0.0]] * 100)
    y = np.array([0] * 40 + [1, 2, 3, 4] * 15 + [0] * 10 + [1, 2, 3] * 30)
    return p, y


def test_confidences_on_bin_edges_design_example():
    p, y = design_example()
    # 0.2 -> [0.2, 0.3): acc .4 conf .2; 0.3 -> [0.3, 0.4): acc .1 conf .3; both gaps 0.2
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(0.20, abs=1e-12)
    assert maximum_calibration_error(p, y, n_bins=10) == pytest.approx(0.20, abs=1e-12)
    assert rms_calibration_error(p, y, n_bins=10) == pytest.approx(0.20, abs=1e-12)
    debiased = math.sqrt(0.5 * (0.04 - 0.4 * 0.6 / 99) + 0.5 * (0.04 - 0.1 * 0.9 / 99))
    assert debiased_calibration_error(p, y, n_bins=10) == pytest.approx(debiased, abs=1e-12)
    d = reliability_diagram(p, y, n_bins=10)
    assert d.counts.tolist() == [0, 0, 100, 100, 0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(d.accuracy[2:4], [0.4, 0.1])
    assert accuracy_score(p, y) == 0.25


@pytest.mark.parametrize("m", range(1, 21))
def test_every_edge_lands_in_its_own_bin(m):
    for i in range(m + 1):
        expected = min(i, m - 1)
        for value in (i / m, np.linspace(0, 1, m + 1)[i], np.arange(m + 1)[i] / m):
            assert width_bin_index(np.array([value]), m)[0] == expected, (m, i, value)
    # just below an edge stays below
    for i in range(1, m):
        assert width_bin_index(np.array([np.nextafter(i / m, 0) - 1e-15]), m)[0] == i - 1


def test_confidence_one_is_in_the_last_bin_not_an_extra_one():
    p = np.array([[1.0, 0.0, 0.0]] * 3 + [[0.0, 1.0, 0.0]])
    y = np.array([0, 0, 1, 2])  # 2 right at confidence 1
    d = reliability_diagram(p, y, n_bins=10)
    assert d.counts.shape == (10,) and d.counts[-1] == 4 and d.edges[-1] == 1.0
    assert expected_calibration_error(p, y) == pytest.approx(0.5)
    assert maximum_calibration_error(p, y, n_bins=1) == pytest.approx(0.5)


def test_two_options_are_scored_top_label():
    # both items have confidence 0.8, one right: one bin, acc .5 -> ECE .3
    # (positive-class scoring would see p1 = .2 (y=0) and .8 (y=0): ECE .5)
    p = np.array([[0.8, 0.2], [0.2, 0.8]] * 50)
    y = np.zeros(100, dtype=int)
    assert expected_calibration_error(p, y) == pytest.approx(0.3, abs=1e-12)
    # the same as a 3-option problem whose third option never gets mass
    p3 = np.column_stack([p, np.zeros(100)])
    assert metric_suite(p3, y, n_options=np.full(100, 2)) == metric_suite(p, y)


def test_argmax_ties_go_to_the_lowest_index():
    p = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2]])
    assert accuracy_score(p, [0, 1]) == 0.5
    assert accuracy_score(np.full((1, 4), 0.25), [0]) == 1.0
    assert accuracy_score(np.full((1, 4), 0.25), [3]) == 0.0
    assert expected_calibration_error(p, [0, 1]) == pytest.approx(0.1)


def test_a_slice_whose_labels_are_all_the_same():
    p, _ = random_forecasts(500, 4, seed=3)
    y = np.zeros(500, dtype=int)
    s = metric_suite(p, y)
    assert all(np.isfinite(v) for v in s.values())
    assert s["brier_uncertainty"] == 0.0  # labels carry no uncertainty
    c, a = top_label(p, y)
    assert s["accuracy"] == pytest.approx(a.mean())


def test_accuracy_brier_nll_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0], [0.0, 0.1, 0.9]])
    y = np.array([0, 1, 0])
    assert accuracy_score(p, y) == pytest.approx(1 / 3)
    b = [(0.3**2 + 0.2**2 + 0.1**2), (0.25 + 0.25), (1 + 0.01 + 0.81)]
    assert brier_loss(p, y) == pytest.approx(np.mean(b))
    nll = [-math.log(0.7), -math.log(0.5), -math.log(1e-12)]  # p = 0 is clipped at 1e-12
    assert nll_loss(p, y) == pytest.approx(np.mean(nll))


def test_auroc_aurc_and_coverage_by_hand():
    # confidences .9 R, .8 W, .7 R, .6 W (R = right)
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    y = np.array([0, 1, 0, 1])
    # pairs (right, wrong): (.9,.8) (.9,.6) (.7,.6) ordered, (.7,.8) not -> 3/4
    assert confidence_auroc_score(p, y) == pytest.approx(0.75)
    # risks at coverage 1..4: 0, 1/2, 1/3, 2/4
    assert area_under_risk_coverage(p, y) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    assert accuracy_at_coverage(p, y, coverage=0.5) == pytest.approx(0.5)
    assert accuracy_at_coverage(p, y, coverage=0.25) == pytest.approx(1.0)
    assert accuracy_at_coverage(p, y, coverage=0.375) == pytest.approx(1.0 / 1.5)  # 1.5 items
    assert accuracy_at_coverage(p, y, coverage=1.0) == pytest.approx(0.5)


def test_ties_in_confidence_count_half_and_share_their_error_rate():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 0, 1])  # .9 R, .6 R, .6 W
    assert confidence_auroc_score(p, y) == pytest.approx(0.75)
    # ranked .9 then the tie block (error rate .5 each): errors 0, .5, 1 -> risks 0, .5/2, 1/3
    assert area_under_risk_coverage(p, y) == pytest.approx((0 + 0.5 / 2 + 1 / 3) / 3)
    assert accuracy_at_coverage(p, y, coverage=2 / 3) == pytest.approx(0.75)


def test_auroc_is_nan_when_all_right_or_all_wrong():
    p = np.array([[0.9, 0.1], [0.6, 0.4]])
    assert math.isnan(confidence_auroc_score(p, [0, 0]))
    assert math.isnan(confidence_auroc_score(p, [1, 1]))
    assert math.isnan(metric_suite(p, [0, 0])["auroc"])


def test_debiased_ece_does_not_crash_on_sparse_bins():
    p = np.array([[0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    y = np.array([0, 1, 0])
    # the single-item bin contributes 0; the 2-item bin: (0.5 - 0.55)^2 - 0.25/1 < 0 -> clipped
    assert debiased_calibration_error(p, y) == 0.0
    assert debiased_calibration_error(p[:1], y[:1]) == 0.0
    # bins with >= 2 items: the estimator is below the plug-in by the variance term
    p2, y2 = random_forecasts(2000, seed=1)
    assert debiased_calibration_error(p2, y2) < rms_calibration_error(p2, y2)


def test_equal_mass_bins_are_array_split_chunks():
    conf = np.array([0.95, 0.3, 0.5, 0.7, 0.6, 0.85, 0.4])
    p = _rows_with_top(conf)
    y = np.array([0, 1, 0, 0, 1, 0, 0])
    # sorted: .3W .4R .5R | .6W .7R | .85R .95R  (sizes 3, 2, 2)
    d = reliability_diagram(p, y, n_bins=3, scheme="mass")
    assert d.counts.tolist() == [3, 2, 2]
    np.testing.assert_allclose(d.mean_confidence, [0.4, 0.65, 0.9])
    np.testing.assert_allclose(d.accuracy, [2 / 3, 0.5, 1.0])
    np.testing.assert_allclose(d.edges, [0.0, 0.6, 0.85, 1.0])
    ece = (abs(2 - 1.2) + abs(1 - 1.3) + abs(2 - 1.8)) / 7
    assert expected_calibration_error(p, y, n_bins=3, scheme="mass") == pytest.approx(ece)
    # more bins than items: empty chunks are fine
    assert expected_calibration_error(p[:2], y[:2], n_bins=5, scheme="mass") == pytest.approx(
        (abs(1 - 0.95) + abs(0 - 0.3)) / 2)


def test_classwise_ece_and_brier_decomposition_by_hand():
    p = np.array([[0.7, 0.3], [0.7, 0.3], [0.2, 0.8], [0.2, 0.8]])
    y = np.array([0, 1, 1, 1])
    # option 0: bin .7 -> ybar .5 (gap .2), bin .2 -> ybar 0 (gap .2): ECE_0 = .2; option 1 mirrors
    assert classwise_calibration_error(p, y) == pytest.approx(0.2)
    rel, res, unc = (brier_decomposition(p, y).__dict__[k]
                     for k in ("reliability", "resolution", "uncertainty"))
    # per option: rel = (2*.04 + 2*.04)/4 = .04; ybar_0 = .25: res = (2*.0625 + 2*.0625)/4, unc = .1875
    assert rel == pytest.approx(2 * 0.04)
    assert res == pytest.approx(2 * 0.0625)
    assert unc == pytest.approx(2 * 0.1875)
    assert rel - res + unc == pytest.approx(brier_loss(p, y), abs=1e-12)


def test_brier_identity_holds_when_each_bin_holds_one_forecast():
    rng = np.random.default_rng(5)
    forecasts = np.array([[0.7, 0.2, 0.1], [0.1, 0.35, 0.55], [0.25, 0.5, 0.25]])
    p = forecasts[rng.integers(0, 3, 3000)]
    y = rng.integers(0, 3, 3000)
    d = brier_decomposition(p, y)
    assert d.reliability - d.resolution + d.uncertainty == pytest.approx(brier_loss(p, y), abs=1e-12)
    # with continuous forecasts it is only approximate (within-bin variance terms)
    p2, y2 = random_forecasts(3000, 3, seed=2)
    d2 = brier_decomposition(p2, y2)
    gap = d2.reliability - d2.resolution + d2.uncertainty - brier_loss(p2, y2)
    assert 1e-9 < abs(gap) < 0.05


def test_smooth_ece_by_hand():
    # residual 0 everywhere -> 0; a constant residual of .5 -> .5 (up to relplot's 1e-4 density floor)
    p = np.array([[1.0, 0.0]] * 10)
    assert smooth_calibration_error(p, np.zeros(10, dtype=int)) == 0.0
    p = np.array([[0.5, 0.5]] * 1000)
    assert smooth_calibration_error(p, np.ones(1000, dtype=int)) == pytest.approx(0.5, rel=1e-6)


def test_wilson_interval():
    low, high = wilson_interval(np.array([0, 5, 10, 0]), np.array([10, 10, 10, 0]))
    assert low[0] == pytest.approx(0.0, abs=1e-15) and high[2] == pytest.approx(1.0)
    assert math.isnan(low[3]) and math.isnan(high[3])
    assert low[1] == pytest.approx(0.2366, abs=1e-4) and high[1] == pytest.approx(0.7634, abs=1e-4)


def test_suite_keys_and_directions():
    p, y = random_forecasts(300)
    s = metric_suite(p, y)
    assert list(s) == ["n", *METRIC_NAMES]
    assert list(METRIC_NAMES) == [
        "accuracy", "ece", "mce", "rms_ce", "debiased_ece", "smooth_ece", "brier",
        "brier_reliability", "brier_resolution", "brier_uncertainty", "nll", "auroc", "aurc",
        "acc_at_80", "classwise_ece"]
    assert set(METRIC_DIRECTION) == set(METRIC_NAMES)
    assert isinstance(s["n"], int) and all(type(v) is float for k, v in s.items() if k != "n")
    assert s["acc_at_80"] == pytest.approx(accuracy_at_coverage(p, y, coverage=0.8))


# --------------------------------------------------------------------------- references
def test_parity_with_scikit_learn():
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    p, y = random_forecasts(3000, 4, seed=7)
    tied = np.round(p, 2)  # many ties in confidence
    tied /= tied.sum(axis=1, keepdims=True)
    conf, correct = top_label(tied, y)
    assert confidence_auroc_score(tied, y) == pytest.approx(roc_auc_score(correct, conf), abs=1e-12)
    assert nll_loss(p, y) == pytest.approx(log_loss(y, p, labels=range(4)), abs=1e-12)
    assert brier_loss(p, y) == pytest.approx(
        brier_score_loss(y, p, labels=range(4), scale_by_half=False), abs=1e-12)
    # two options: ours is the sum over both columns = twice sklearn's positive-class Brier
    p2, y2 = random_forecasts(1000, 2, seed=8)
    assert brier_loss(p2, y2) == pytest.approx(2 * brier_score_loss(y2, p2[:, 1]), abs=1e-12)
    # reliability curve on data off the edges
    p3, y3 = random_forecasts(2000, 4, seed=9)
    c3, a3 = top_label(p3, y3)
    prob_true, prob_pred = calibration_curve(a3, c3, n_bins=10, strategy="uniform")
    d = reliability_diagram(p3, y3, n_bins=10)
    keep = d.counts > 0
    np.testing.assert_allclose(d.accuracy[keep], prob_true, atol=1e-12)
    np.testing.assert_allclose(d.mean_confidence[keep], prob_pred, atol=1e-12)


def test_scikit_learn_calibration_curve_puts_edge_values_in_the_lower_bin():
    """sklearn bins are (a, b] (searchsorted left): 0.2 joins 0.15 in (0.1, 0.2]; ours [0.2, 0.3)."""
    from sklearn.calibration import calibration_curve

    conf = np.array([0.15, 0.2])
    prob_true, prob_pred = calibration_curve(np.array([1, 0]), conf, n_bins=10)
    assert prob_pred.tolist() == [0.175]
    d = reliability_diagram(_rows_with_top(conf), np.array([0, 1]), n_bins=10)
    assert d.counts[1] == 1 and d.counts[2] == 1


def _rows_with_top(conf):
    """Rows of 8 options whose maximum (first column) is ``conf``."""
    rest = (1 - conf)[:, None] / 7
    return np.column_stack([conf, np.repeat(rest, 7, axis=1)])


def test_parity_with_netcal_where_it_is_right():
    from netcal.metrics import ECE

    for seed in range(3):
        p, y = random_forecasts(2000, 4, seed=seed)
        assert ECE(bins=10).measure(p, y) == pytest.approx(
            expected_calibration_error(p, y, n_bins=10), abs=1e-12)


def test_netcal_is_wrong_on_edges_two_options_and_few_labels():
    from netcal.metrics import ECE

    p, y = design_example()
    assert ECE(bins=10).measure(p, y) == pytest.approx(0.0, abs=1e-12)  # 0.3 put in [0.2, 0.3)
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(0.2, abs=1e-12)
    p2 = np.array([[0.8, 0.2], [0.2, 0.8]] * 50)
    y2 = np.zeros(100, dtype=int)
    assert ECE(bins=10).measure(p2, y2) == pytest.approx(0.5, abs=1e-12)  # positive class
    assert expected_calibration_error(p2, y2) == pytest.approx(0.3, abs=1e-12)  # top label
    p4, _ = random_forecasts(200, 4, seed=4)
    y4 = np.random.default_rng(4).integers(0, 2, 200)
    with pytest.raises(RuntimeError):
        ECE(bins=10).measure(p4, y4)
    assert np.isfinite(expected_calibration_error(p4, y4))


def test_parity_with_relplot_smooth_ece():
    import relplot

    for seed, n in [(0, 50), (1, 2000), (2, 14042)]:
        p, y = random_forecasts(n, 4, seed=seed, calibrated=seed == 2)
        conf, correct = top_label(p, y)
        assert smooth_calibration_error(p, y) == pytest.approx(relplot.smECE(conf, correct), abs=1e-12)


# --------------------------------------------------------------------------- invariants
def _assert_suites_equal(a, b, skip=()):
    assert list(a) == list(b)
    for k in a:
        if k in skip:
            continue
        assert a[k] == pytest.approx(b[k], abs=1e-12, nan_ok=True), k


@pytest.mark.parametrize("scheme", ["width", "mass"])
def test_permutation_invariance(scheme):
    p, y = random_forecasts(1500, 4, seed=11)
    p = np.round(p, 2)  # ties across items with different outcomes
    p[:, -1] = 1 - p[:, :-1].sum(axis=1)
    keep = (p >= 0).all(axis=1)
    p, y = p[keep], y[keep]
    perm = np.random.default_rng(0).permutation(len(y))
    _assert_suites_equal(metric_suite(p, y, scheme=scheme), metric_suite(p[perm], y[perm], scheme=scheme))


def test_padding_an_extra_zero_column_changes_nothing():
    p, y = random_forecasts(1000, 4, seed=12)
    padded = np.column_stack([p, np.zeros(len(y))])
    base = metric_suite(p, y)
    _assert_suites_equal(base, metric_suite(padded, y, n_options=np.full(len(y), 4)))
    # without n_options the zero column counts as a (never chosen) option in classwise ECE only
    unflagged = metric_suite(padded, y)
    _assert_suites_equal(base, unflagged, skip={"classwise_ece"})
    assert unflagged["classwise_ece"] == pytest.approx(base["classwise_ece"] * 4 / 5)


def test_ragged_options():
    p4, y4 = random_forecasts(300, 4, seed=13)
    p2, y2 = random_forecasts(200, 2, seed=14)
    p = np.vstack([p4, np.column_stack([p2, np.zeros((200, 2))])])
    y = np.concatenate([y4, y2])
    n_opt = np.r_[np.full(300, 4), np.full(200, 2)]
    s = metric_suite(p, y, n_options=n_opt)
    conf, correct = top_label(p, y)
    assert s["accuracy"] == pytest.approx(correct.mean())
    # options 2 and 3 are binned over the 300 four-option rows only
    d = brier_decomposition(p, y, n_options=n_opt)
    assert d.uncertainty == pytest.approx(sum(
        n_k * yb * (1 - yb) for n_k, yb in
        [(500, np.mean(y == 0)), (500, np.mean(y == 1)), (300, np.mean(y4 == 2)), (300, np.mean(y4 == 3))]) / 500)


def test_calibrated_data_has_small_calibration_error():
    p, y = random_forecasts(20000, 4, seed=15, calibrated=True)
    s = metric_suite(p, y)
    for key in ("ece", "rms_ce", "smooth_ece", "classwise_ece", "brier_reliability"):
        assert s[key] < 0.02, (key, s[key])
    assert s["debiased_ece"] < s["rms_ce"]
    miscal = metric_suite(p ** 3 / (p ** 3).sum(axis=1, keepdims=True), y)
    for key in ("ece", "rms_ce", "debiased_ece", "smooth_ece", "classwise_ece"):
        assert miscal[key] > 5 * s[key], key


def test_ranges_of_every_metric():
    p, y = random_forecasts(800, 5, seed=16)
    s = metric_suite(p, y, n_bins=15)
    for k in METRIC_NAMES:
        assert 0.0 <= s[k] <= (2.0 if k.startswith("brier") else 30.0 if k == "nll" else 1.0), k
    assert s["mce"] >= s["ece"] and s["rms_ce"] >= s["ece"] - 1e-15


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("probs, labels, message", [
    ([0.2, 0.8], [1], "Expected probs of shape (n_items, n_options)"),
    (np.zeros((0, 2)), [], "Expected at least one item"),
    ([[1.0]], [0], "Expected at least 2 option columns"),
    ([[0.5, np.nan]], [0], "Expected finite probs"),
    ([[1.2, -0.2]], [0], "Expected non-negative probs"),
    ([[0.5, 0.6]], [0], "Expected rows of probs to sum to 1 within 1e-06"),
    ([[0.5, 0.5]], [2], "Expected labels in [0, 1], got 2"),
    ([[0.5, 0.5]], [0.5], "Expected integer labels"),
    ([[0.5, 0.5]], ["a"], "Expected integer labels"),
    ([[0.5, 0.5]], [0, 1], "Expected labels of shape (1,)"),
])
def test_bad_input_raises_one_clear_value_error(probs, labels, message):
    with pytest.raises(ValueError, match=None) as info:
        metric_suite(probs, labels)
    assert str(info.value).startswith(message), str(info.value)


def test_bad_options_raise():
    p = np.array([[0.5, 0.5, 0.0]])
    with pytest.raises(ValueError, match="Expected n_bins"):
        metric_suite(p, [0], n_bins=0)
    with pytest.raises(ValueError, match="Expected scheme"):
        expected_calibration_error(p, [0], scheme="quantile")
    with pytest.raises(ValueError, match="Expected zero padding"):
        metric_suite(np.array([[0.5, 0.3, 0.2]]), [0], n_options=[2])
    with pytest.raises(ValueError, match=r"Expected labels in \[0, 1\], got 2"):
        metric_suite(p, [2], n_options=[2])
    with pytest.raises(ValueError, match="Expected coverage"):
        accuracy_at_coverage(p, [0], coverage=0)
    assert metric_suite(p, [1.0])["accuracy"] == 0.0  # integral floats are labels


def test_importing_the_core_does_not_import_torch_or_netcal():
    code = ("import sys, first_eval.calibration, first_eval.bootstrap; "
            "print(sorted(m for m in ('torch', 'transformers', 'netcal') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
