"""Tests for first_eval.calibrators: known answers, brute-force references, invariants, honesty."""

from __future__ import annotations

import importlib.util
import re
import warnings

import numpy as np
import pytest

from first_eval.calibrators import (
    CALIBRATORS,
    CrossFitResult,
    HistogramBinning,
    IsotonicCalibration,
    TemperatureScaling,
    cross_fit,
)


#: The calibrators this environment can fit: the netcal-backed ones need the netcal extra.
USABLE = [n for n in sorted(CALIBRATORS)
          if n not in ("bbq", "beta", "logistic") or importlib.util.find_spec("netcal") is not None]
#: Those that take ragged (zero-padded) items and never move the argmax: all but "dirichlet"
#: (one option count, a full-matrix map; see test_calibrators_netcal.py).
SAME_PREDICTION = [n for n in USABLE if n != "dirichlet"]


# --------------------------------------------------------------------------- helpers
def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic(n: int, k: int = 4, sharpen: float = 2.5, seed: int = 0):
    """A model whose logits are ``sharpen`` times the true logits ``z``; labels ~ softmax(z).

    Temperature scaling should recover ``T = sharpen`` (softmax(log p / T) = softmax(z)).
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, k))
    true = softmax(z)
    labels = (rng.random((n, 1)) > np.cumsum(true, axis=1)).sum(axis=1)
    return softmax(sharpen * z), np.minimum(labels, k - 1)


def ragged(n: int, k_max: int = 5, sharpen: float = 2.5, seed: int = 1):
    """Like :func:`synthetic`, with 2..k_max options per item, zero-padded on the right."""
    rng = np.random.default_rng(seed)
    k = rng.integers(2, k_max + 1, size=n)
    z = rng.normal(0.0, 1.5, size=(n, k_max))
    z[np.arange(k_max)[None, :] >= k[:, None]] = -np.inf
    true = softmax(z)
    labels = np.minimum((rng.random((n, 1)) > np.cumsum(true, axis=1)).sum(axis=1), k - 1)
    return softmax(sharpen * z), labels, k


def with_confidence(conf, correct, k: int = 4):
    """Rows whose top option (index 0) has probability ``conf``; label 0 if ``correct`` else 1."""
    conf = np.asarray(conf, dtype=float)
    probs = np.column_stack([conf] + [(1.0 - conf) / (k - 1)] * (k - 1))
    return probs, np.where(np.asarray(correct, dtype=bool), 0, 1)


def ece_loop(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Top-label equal-width ECE by a plain loop (bins [i/M, (i+1)/M), the last closed)."""
    total = 0.0
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        idx = [i for i, c in enumerate(conf) if lo <= c < hi or (b == n_bins - 1 and c == 1.0)]
        if idx:
            total += len(idx) * abs(np.mean(correct[idx]) - np.mean(conf[idx]))
    return total / len(conf)


def nll_loop(probs: np.ndarray, labels: np.ndarray, t: float) -> float:
    """NLL of softmax(log p / t) over each row's non-zero options, by a plain loop."""
    out = []
    for row, y in zip(probs, labels):
        keep = row > 0
        s = np.log(row[keep]) / t
        out.append(-(np.log(row[y]) / t - np.log(np.sum(np.exp(s)))))
    return float(np.mean(out))


# --------------------------------------------------------------------------- temperature scaling
def test_temperature_recovers_known_temperature():
    probs, labels = synthetic(20_000, sharpen=2.5, seed=0)
    t = TemperatureScaling().fit(probs, labels).temperature_
    assert t == pytest.approx(2.5, rel=0.05)
    under, labels_u = synthetic(20_000, sharpen=0.6, seed=1)  # under-confident: T < 1
    assert TemperatureScaling().fit(under, labels_u).temperature_ == pytest.approx(0.6, rel=0.05)


def nll_grid(probs: np.ndarray, labels: np.ndarray, temps: np.ndarray) -> np.ndarray:
    """NLL of softmax(log p / t) over non-zero options for every t in ``temps``, by plain sums."""
    logp = np.where(probs > 0, np.log(np.where(probs > 0, probs, 1.0)), -np.inf)
    scaled = logp[None, :, :] / temps[:, None, None]
    gold = logp[np.arange(len(labels)), labels][None, :] / temps[:, None]
    return np.mean(np.log(np.exp(scaled).sum(axis=2)) - gold, axis=1)


def test_temperature_matches_brute_force_grid_search():
    probs, labels, _ = ragged(600, seed=3)
    ts = TemperatureScaling().fit(probs, labels)
    grid = np.exp(np.linspace(np.log(0.2), np.log(10.0), 2001))
    coarse = grid[np.argmin(nll_grid(probs, labels, grid))]
    fine = np.linspace(coarse * 0.995, coarse * 1.005, 2001)
    nlls = nll_grid(probs, labels, fine)
    t_grid = fine[int(np.argmin(nlls))]
    assert ts.temperature_ == pytest.approx(t_grid, rel=1e-5)
    assert ts.nll_ <= nlls.min() + 1e-12
    assert ts.nll_ == pytest.approx(nll_loop(probs, labels, ts.temperature_), rel=1e-12)


def test_temperature_ignores_zero_padding():
    """Padding columns change neither the fitted temperature nor the real options' output."""
    probs, labels = synthetic(500, k=3, seed=4)
    padded = np.hstack([probs, np.zeros((500, 2))])
    a, b = TemperatureScaling().fit(probs, labels), TemperatureScaling().fit(padded, labels)
    assert a.temperature_ == pytest.approx(b.temperature_, rel=1e-9)
    out = b.transform(padded)
    np.testing.assert_array_equal(out[:, 3:], 0.0)
    np.testing.assert_allclose(out[:, :3], a.transform(probs), atol=1e-12)


def test_temperature_known_transform_and_certain_rows():
    ts = TemperatureScaling()
    ts.temperature_ = 2.0
    out = ts.transform([[0.64, 0.16, 0.2 - 0.0, 0.0]])
    expected = np.sqrt([0.64, 0.16, 0.2]) / np.sqrt([0.64, 0.16, 0.2]).sum()
    np.testing.assert_allclose(out[0, :3], expected, rtol=1e-12)
    assert out[0, 3] == 0.0
    certain = TemperatureScaling().fit([[1.0, 0.0], [0.0, 1.0]], [0, 1])  # NLL flat in T
    assert certain.temperature_ == 1.0
    np.testing.assert_array_equal(certain.transform([[1.0, 0.0]]), [[1.0, 0.0]])


# --------------------------------------------------------------------------- histogram binning
def test_histogram_edges_and_hand_values():
    """Confidence 0.3 is in [0.3, 0.4); 1.0 is in the last bin; empty bins keep the identity."""
    conf = np.array([0.3, 0.3, 0.3, 0.3, 0.35, 0.5, 0.5, 1.0, 1.0])
    correct = np.array([1, 1, 0, 0, 1, 1, 1, 1, 0])
    hb = HistogramBinning(10).fit(*with_confidence(conf, correct))
    np.testing.assert_array_equal(hb.bin_counts_, [0, 0, 0, 5, 0, 2, 0, 0, 0, 2])
    got = hb.calibrate_confidence([0.3, 0.399, 0.5, 0.55, 1.0, 0.72])
    np.testing.assert_allclose(got, [0.6, 0.6, 1.0, 1.0, 0.5, 0.72])
    mid = HistogramBinning(10, empty="midpoint").fit(*with_confidence(conf, correct))
    assert mid.calibrate_confidence([0.72])[0] == pytest.approx(0.75)
    assert hb.fitted_params()["bin_accuracy"][:4] == [None, None, None, 0.6]


def test_histogram_fit_uses_top_label_correctness():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.75, 0.15], [0.2, 0.1, 0.7], [0.72, 0.28, 0.0]])
    labels = np.array([0, 0, 2, 1])  # right, wrong, right, wrong; all in bin 7
    hb = HistogramBinning(10).fit(probs, labels)
    assert hb.bin_counts_[7] == 4 and hb.bin_accuracy_[7] == 0.5
    out = hb.transform(probs)
    np.testing.assert_allclose(out.max(axis=1), 0.5)
    # The rest is rescaled proportionally: row 0's others keep their 2:1 ratio.
    np.testing.assert_allclose(out[0], [0.5, 0.5 * 2 / 3, 0.5 / 3])
    assert out[3, 2] == 0.0


def _fit_netcal_quietly(model, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyro: "independent is deprecated" on every fit
        return model.fit(x, y)


def test_netcal_histogram_binning_misplaces_edge_confidences(capsys):
    """Why we bin by hand: netcal 1.4.0 fits bins as [a, b) but transforms with (a, b].

    Ten items at confidence 0.5, all right, and ten at 0.45, all wrong: netcal maps 0.5 to 0.0
    (the [0.4, 0.5) bin's accuracy) on its own training data. Ours maps it to 1.0. Away from
    edges the two agree (``empty="midpoint"`` reproduces netcal's empty-bin fill).
    """
    binning = pytest.importorskip("netcal.binning")
    conf = np.array([0.5] * 10 + [0.45] * 10)
    correct = np.array([1] * 10 + [0] * 10)
    netcal_hb = _fit_netcal_quietly(binning.HistogramBinning(bins=10), conf, correct)
    ours = HistogramBinning(10).fit(*with_confidence(conf, correct))
    assert netcal_hb.transform(np.array([0.5]))[0] == 0.0  # netcal: wrong bin
    assert ours.calibrate_confidence([0.5])[0] == 1.0

    rng = np.random.default_rng(5)
    conf = rng.uniform(0.25, 1.0, 400)
    correct = (rng.random(400) < conf ** 2).astype(float)
    netcal_hb = _fit_netcal_quietly(binning.HistogramBinning(bins=10), conf, correct)
    mid = HistogramBinning(10, empty="midpoint").fit(*with_confidence(conf, correct))
    probe = rng.uniform(0.0, 1.0, 1000)  # almost surely off the edges
    got, ref = mid.calibrate_confidence(probe), netcal_hb.transform(probe)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    capsys.readouterr()  # netcal prints "WARNING: Not all class labels ..." on some fits


def test_netcal_multiclass_histogram_is_not_top_label(capsys):
    """netcal on (n, K) input does one-vs-all binning and renormalizes: the argmax can move and
    a real option can be zeroed, so it is unusable for top-label recalibration."""
    binning = pytest.importorskip("netcal.binning")
    p = np.array([[0.7, 0.2, 0.1, 0.0], [0.4, 0.3, 0.3, 0.0], [0.25, 0.25, 0.25, 0.25]] * 5)
    y = np.array([0, 1, 2] * 5)
    out = _fit_netcal_quietly(binning.HistogramBinning(bins=10), p, y).transform(p)
    assert (out.argmax(axis=1) != p.argmax(axis=1)).any()
    assert out[2, 3] == 0.0 < p[2, 3]
    capsys.readouterr()


# --------------------------------------------------------------------------- isotonic
def pav_loop(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators by a plain loop; returns fitted values in sorted-x order."""
    blocks = []  # [mean, weight]
    for v in y[np.argsort(x)]:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2), (m1, w1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2])
    return np.concatenate([[m] * int(w) for m, w in blocks])


def test_isotonic_matches_pav_loop():
    rng = np.random.default_rng(6)
    probs = rng.dirichlet(np.full(4, 0.4), size=300)
    labels = rng.integers(0, 4, size=300)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    iso = IsotonicCalibration().fit(probs, labels)
    got = iso.calibrate_confidence(np.sort(conf))
    np.testing.assert_allclose(got, pav_loop(conf, correct), atol=1e-12)
    assert np.all(np.diff(iso.calibrate_confidence(np.linspace(0, 1, 101))) >= 0)


# --------------------------------------------------------------------------- invariants, all
@pytest.mark.parametrize("name", SAME_PREDICTION)
def test_transform_invariants(name):
    probs, labels, k = ragged(800, seed=7)
    fit_p, fit_y, test_p = probs[:500], labels[:500], probs[500:].copy()
    # Ties in the input, including a runner-up with a lower index than the top option.
    test_p[:3, :] = [[0.4, 0.4, 0.2, 0, 0], [0.35, 0.4, 0.25, 0, 0], [0.5, 0.5, 0, 0, 0]]
    before = test_p.copy()
    out = CALIBRATORS[name]().fit(fit_p, fit_y).transform(test_p)
    np.testing.assert_array_equal(test_p, before)  # input untouched
    assert out.shape == test_p.shape
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_array_equal(out[test_p == 0], 0.0)  # padding stays exactly 0
    np.testing.assert_array_equal(out.argmax(axis=1), test_p.argmax(axis=1))


@pytest.mark.parametrize("name", ["histogram", "isotonic"])
def test_argmax_kept_when_the_map_says_top_is_wrong(name):
    """A model whose confident answers are all wrong: the map sends high confidence to ~0, yet
    the prediction does not move (the confidence is floored just above the runner-up)."""
    rng = np.random.default_rng(8)
    probs = rng.dirichlet(np.full(4, 0.5), size=400)
    labels = (probs.argmax(axis=1) + 1) % 4  # always wrong
    cal = CALIBRATORS[name]().fit(probs, labels)
    assert cal.calibrate_confidence([0.9])[0] < 0.1
    out = cal.transform(probs)
    np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))
    runner_up = np.sort(out, axis=1)[:, -2]
    assert np.all(out.max(axis=1) > runner_up)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)


def test_certain_rows_are_left_unchanged_and_tiny_rests_stay_finite():
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [1.0, 5e-324, 0.0]])
    labels = np.array([1, 1, 0, 1])
    for name in ("histogram", "isotonic"):
        out = CALIBRATORS[name]().fit(probs, labels).transform(probs)
        np.testing.assert_array_equal(out[:2], probs[:2])  # no other option to move mass to
        assert np.isfinite(out).all() and out[3, 2] == 0.0
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
        assert out[3, 0] > out[3, 1]


# --------------------------------------------------------------------------- cross-fitting
@pytest.mark.parametrize("name", USABLE)
def test_cross_fit_lowers_held_out_ece(name):
    probs, labels = synthetic(3000, sharpen=2.5, seed=9)
    res = cross_fit(name, probs, labels, n_folds=5, seed=0)
    before, after = ece_loop(probs, labels), ece_loop(res.probs, labels)
    assert before > 0.1
    assert after < 0.5 * before
    if name in SAME_PREDICTION:
        np.testing.assert_array_equal(res.probs.argmax(axis=1), probs.argmax(axis=1))


@pytest.mark.parametrize("name", SAME_PREDICTION)
def test_cross_fit_never_uses_an_items_own_label(name):
    probs, labels, _ = ragged(300, seed=10)
    i = 17
    flipped = labels.copy()
    flipped[i] = (labels[i] + 1) % 2  # every item has >= 2 options
    a = cross_fit(name, probs, labels, seed=3)
    b = cross_fit(name, probs, flipped, seed=3)
    np.testing.assert_array_equal(a.fold, b.fold)  # folds never depend on labels
    np.testing.assert_array_equal(a.probs[i], b.probs[i])
    assert not np.array_equal(a.probs, b.probs)  # the flip did reach the other folds


def test_cross_fit_held_out_rows_never_in_training():
    probs, labels, _ = ragged(97, seed=11)
    seen = []

    class Spy(TemperatureScaling):
        def fit(self, p, y):
            seen.append({tuple(r) for r in np.asarray(p)})
            return super().fit(p, y)

        def transform(self, p):
            assert not {tuple(r) for r in np.asarray(p)} & seen[-1]
            return super().transform(p)

    res = cross_fit(Spy, probs, labels, n_folds=4)
    assert len(seen) == 4 and res.method == "Spy"
    assert sorted(np.bincount(res.fold)) == [24, 24, 24, 25]


@pytest.mark.parametrize("stratify", [True, False])
def test_cross_fit_is_deterministic(stratify):
    probs, labels, _ = ragged(200, seed=12)
    a = cross_fit("isotonic", probs, labels, seed=5, stratify=stratify)
    b = cross_fit("isotonic", probs, labels, seed=5, stratify=stratify)
    c = cross_fit("isotonic", probs, labels, seed=6, stratify=stratify)
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(a.fold, b.fold)
    assert not np.array_equal(a.fold, c.fold)
    assert np.bincount(a.fold).max() - np.bincount(a.fold).min() <= 1


def test_stratified_folds_cover_the_confidence_range():
    probs, labels = synthetic(1000, seed=13)
    res = cross_fit("histogram", probs, labels, n_folds=5)
    conf = probs.max(axis=1)
    order = np.argsort(conf, kind="stable")
    for block in order[: 1000 - 1000 % 5].reshape(-1, 5):  # each run of 5 neighbours: 5 folds
        assert sorted(res.fold[block]) == [0, 1, 2, 3, 4]


def test_cross_fit_result_parameters():
    probs, labels = synthetic(500, seed=14)
    res = cross_fit("temperature", probs, labels, n_folds=3)
    assert isinstance(res, CrossFitResult) and res.method == "temperature"
    t = res.fold_values("temperature")
    assert t.shape == (3,) and np.all((t > 1.8) & (t < 3.5))
    hist = cross_fit(lambda: HistogramBinning(5), probs, labels, n_folds=3)
    assert [len(p["bin_counts"]) for p in hist.params] == [5, 5, 5]


# --------------------------------------------------------------------------- errors
THREE = [[0.5, 0.5]] * 3


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cross_fit("temperature", THREE, [0, 1, 0]), "Expected at least n_folds=5 items"),
        (lambda: cross_fit("temperature", THREE, [0, 1, 0], n_folds=1), "Expected n_folds"),
        (lambda: cross_fit("platt", [[0.5, 0.5]] * 9, [0] * 9), "Expected a calibrator in"),
        (lambda: TemperatureScaling().fit([[0.5, 0.6]], [0]), "Expected rows of probs to sum to 1"),
        (lambda: TemperatureScaling().fit([[1.5, -0.5]], [0]), "Expected non-negative probs"),
        (lambda: TemperatureScaling().fit([[np.nan, 1.0]], [0]), "Expected finite probs"),
        (lambda: HistogramBinning().fit([[0.5, 0.5]], [2]), "Expected labels in [0, 1], got 2"),
        (lambda: IsotonicCalibration().fit([[0.5, 0.5]], [0, 1]), "Expected labels of shape (1,)"),
        (lambda: IsotonicCalibration().fit([0.5, 0.5], [0]), "Expected probs of shape"),
        (lambda: HistogramBinning(0), "Expected n_bins"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_transform_before_fit_raises():
    for cls in CALIBRATORS.values():
        with pytest.raises(RuntimeError, match="not fitted"):
            cls().transform([[0.5, 0.5]])


# --------------------------------------------------------------------------- one validation door
def test_tolerance_and_log_floor_are_defined_once():
    import ast
    from pathlib import Path

    import first_eval
    import first_eval.calibration as calibration
    import first_eval.calibrators as calibrators
    import first_eval.predictions as predictions
    from first_eval.calibration import _checks
    from first_eval.calibration import metrics as metrics_module

    assert predictions.SUM_TOLERANCE is _checks.SUM_TOLERANCE
    assert calibration.SUM_TOLERANCE is _checks.SUM_TOLERANCE
    assert calibrators.PROB_FLOOR is _checks.PROB_FLOOR
    assert metrics_module.PROB_FLOOR is _checks.PROB_FLOOR
    assert calibration.PROB_FLOOR is _checks.PROB_FLOOR
    names = {"SUM_TOLERANCE", "PROB_FLOOR", "NLL_FLOOR"}
    defined = []  # every module-level assignment of one of the names, anywhere in first_eval
    for path in sorted(Path(first_eval.__file__).parent.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            defined += [f"{path.name}:{t.id}" for t in targets if isinstance(t, ast.Name) and t.id in names]
    assert sorted(defined) == ["_checks.py:PROB_FLOOR", "_checks.py:SUM_TOLERANCE"]


BAD_INPUTS = {
    "non-finite": ([[np.nan, 1.0], [0.5, 0.5]], [0, 1], None),
    "infinite": ([[0.5, 0.5], [np.inf, 0.0]], [0, 1], None),
    "negative": ([[1.5, -0.5], [0.5, 0.5]], [0, 1], None),
    "row sum off 1": ([[0.5, 0.5], [0.5, 0.5 + 2e-6]], [0, 1], None),
    "one column": ([[1.0], [1.0]], [0, 0], None),
    "1-D probs": ([0.5, 0.5], [0], None),
    "no items": (np.zeros((0, 3)), [], None),
    "label shape": ([[0.5, 0.5], [0.5, 0.5]], [0], None),
    "2-D labels": ([[0.5, 0.5], [0.5, 0.5]], [[0], [1]], None),
    "label too big": ([[0.5, 0.5], [0.5, 0.5]], [0, 2], None),
    "negative label": ([[0.5, 0.5], [0.5, 0.5]], [-1, 0], None),
    "non-integral label": ([[0.5, 0.5], [0.5, 0.5]], [0, 0.5], None),
    "string label": ([[0.5, 0.5], [0.5, 0.5]], ["a", "b"], None),
    "label beyond its row's options": ([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], [2, 0], [2, 3]),
    "non-zero padding": ([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], [0, 0], [2, 3]),
}


@pytest.mark.parametrize("probs, labels, n_options", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_calibrators_and_metrics_reject_the_same_inputs_with_the_same_message(probs, labels, n_options):
    from first_eval.calibration import expected_calibration_error, metric_suite
    from first_eval.calibration._checks import check_forecasts
    from first_eval.errors import UserError

    with pytest.raises(UserError) as door:
        check_forecasts(probs, labels, n_options)
    message = str(door.value)
    assert message.startswith("Expected ") and ", got " in message, message
    calls = [
        lambda: metric_suite(probs, labels, n_options=n_options),
        lambda: TemperatureScaling().fit(probs, labels, n_options=n_options),
        lambda: HistogramBinning().fit(probs, labels, n_options=n_options),
        lambda: IsotonicCalibration().fit(probs, labels, n_options=n_options),
        lambda: cross_fit("temperature", probs, labels, n_folds=2, n_options=n_options),
    ]
    if n_options is None:
        calls.append(lambda: expected_calibration_error(probs, labels))
    for call in calls:
        with pytest.raises(UserError) as info:
            call()
        assert str(info.value) == message


@pytest.mark.parametrize("name", ["non-finite", "negative", "row sum off 1", "1-D probs", "one column"])
def test_transform_rejects_bad_probs_like_the_metrics(name):
    from first_eval.calibration._checks import check_forecasts

    probs, labels, _ = BAD_INPUTS[name]
    with pytest.raises(ValueError) as door:
        check_forecasts(probs, labels)
    for method in USABLE:
        cal = CALIBRATORS[method]().fit([[0.7, 0.3], [0.4, 0.6], [0.8, 0.2]], [0, 1, 1])
        with pytest.raises(ValueError) as info:
            cal.transform(probs)
        assert str(info.value) == str(door.value)


def test_n_options_is_checked_but_does_not_change_the_fit():
    probs, labels, k = ragged(300, seed=21)
    for name in SAME_PREDICTION:
        factory = CALIBRATORS[name]
        plain = cross_fit(name, probs, labels, n_folds=3)
        told = cross_fit(name, probs, labels, n_folds=3, n_options=k)
        np.testing.assert_array_equal(plain.probs, told.probs)
        a, b = factory().fit(probs, labels), factory().fit(probs, labels, n_options=k)
        np.testing.assert_array_equal(a.transform(probs), b.transform(probs))
