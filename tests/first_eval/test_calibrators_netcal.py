"""The calibrators beyond temperature, histogram and isotonic: bbq, enir, beta, logistic, dirichlet.

Each is checked against an independent reference on the same cross-fitting folds: netcal's own
output where netcal is right (bbq, beta, logistic), scikit-learn's multinomial logistic regression
on log-probabilities (dirichlet), PAV and a brute-force QP (enir's near-isotonic path). Where
netcal is wrong (BBQ's edge lookup, ENIR) a test shows why. Then the invariants, the missing-extra
error, and ``first-eval metrics --calibrate``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import typing
import warnings

import numpy as np
import pytest

from first_eval.calibration import expected_calibration_error, metric_suite
from first_eval.calibrators import (
    CALIBRATORS,
    ENIR,
    DirichletCalibration,
    _near_isotonic_path,
    cross_fit,
)
from first_eval.errors import UserError

NETCAL_METHODS = ("bbq", "beta", "logistic")
TOP_LABEL = ("bbq", "enir", "beta", "logistic")
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


# --------------------------------------------------------------------------- data and helpers
def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n: int = 320, k: int = 4, sharpen: float = 2.5, seed: int = 0, ragged: bool = False):
    """Logits ``sharpen`` times the true ones (labels ~ softmax(true)); 2..k options if ragged."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, k))
    counts = rng.integers(2, k + 1, size=n) if ragged else np.full(n, k)
    z[np.arange(k)[None, :] >= counts[:, None]] = -np.inf
    labels = (rng.random((n, 1)) > np.cumsum(softmax(z), axis=1)).sum(axis=1)
    return softmax(sharpen * z), np.minimum(labels, counts - 1), counts


def with_confidence(conf, correct, k: int = 4):
    """Rows whose top option (index 0) has probability ``conf``; label 0 if ``correct`` else 1."""
    conf = np.asarray(conf, dtype=float)
    probs = np.column_stack([conf] + [(1.0 - conf) / (k - 1)] * (k - 1))
    return probs, np.where(np.asarray(correct, dtype=bool), 0, 1)


def quietly(fn, *args, **kwargs):
    """Call netcal without its prints (stdout, a tqdm bar on stderr) and pyro's warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def top_label(p: np.ndarray):
    top = p.argmax(axis=1)
    conf = p[np.arange(len(p)), top]
    return top, conf


def argmax_floor(p: np.ndarray) -> np.ndarray:
    """The confidence below which the runner-up would overtake the top option after rescaling."""
    top, conf = top_label(p)
    others = p.copy()
    others[np.arange(len(p)), top] = 0.0
    r = others.max(axis=1)
    return r / (others.sum(axis=1) + r)


@pytest.fixture(scope="module")
def data():
    return overconfident(320, ragged=True, seed=0)


def needs(method: str) -> None:
    """Skip a test of a netcal-backed method where the netcal extra is not installed."""
    if method in NETCAL_METHODS:
        pytest.importorskip("netcal")


@pytest.fixture(scope="module")
def fitted(data):
    """One 5-fold cross-fit per method on the same data (shared by the reference and invariant
    tests), computed when a test first asks for it."""
    probs, labels, counts = data
    cache: dict = {}

    def get(method: str):
        needs(method)
        if method not in cache:
            cache[method] = cross_fit(method, probs, labels, n_folds=5, seed=0, n_options=counts)
        return cache[method]

    return get


# --------------------------------------------------------------------------- registry, imports
def test_registry_and_study_config_list_the_same_methods():
    from first_eval.study.config import POSTHOC, PosthocRecipe

    assert POSTHOC == tuple(CALIBRATORS)
    for name in ("bbq", "enir", "beta", "logistic", "dirichlet"):
        assert PosthocRecipe(model="teacher", method=name).method == name
    with pytest.raises(UserError, match="posthoc: method must be one of temperature, .*, dirichlet, got 'platt'"):
        PosthocRecipe(model="teacher", method="platt")


def test_importing_the_calibrators_imports_neither_netcal_nor_torch():
    code = ("import sys, first_eval.calibrators, first_eval.cli.metrics\n"
            "bad = [m for m in ('netcal', 'torch', 'pyro') if m in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("method", NETCAL_METHODS)
def test_missing_netcal_is_one_clear_user_error(monkeypatch, method):
    for name in [m for m in sys.modules if m == "netcal" or m.startswith("netcal.")] + ["netcal"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import netcal...` now raises ImportError
    probs, labels, _ = overconfident(60, seed=1)
    with pytest.raises(UserError) as info:
        CALIBRATORS[method]().fit(probs, labels)
    assert str(info.value) == f"calibrator {method!r} needs netcal: pip install 'first-toolkit[netcal]'"
    with pytest.raises(UserError, match="needs netcal"):
        cross_fit(method, probs, labels)
    # ENIR and Dirichlet are our own: they need no netcal.
    cross_fit("enir", probs, labels)
    cross_fit("dirichlet", probs, labels)


# --------------------------------------------------------------------------- against netcal, same folds
def _netcal_fit_transform(method, x_fit, y_fit, x_held):
    if method == "bbq":
        from netcal.binning import BBQ

        model = quietly(BBQ().fit, x_fit, y_fit)
        return quietly(model.transform, x_held)
    from netcal import scaling

    cls = {"beta": scaling.BetaCalibration, "logistic": scaling.LogisticCalibration}[method]
    model = quietly(cls(method="mle").fit, x_fit, y_fit, random_state=0, tensorboard=False)
    return quietly(model.transform, x_held)


@pytest.mark.parametrize("method", NETCAL_METHODS)
def test_matches_netcal_on_the_same_folds(data, fitted, method):
    """netcal fitted directly on each fold's training (confidence, correct) pairs and applied to the
    held-out confidences gives our calibrated top-label confidences (where the argmax floor does
    not bind; where it does, ours is the floor, above netcal's value)."""
    pytest.importorskip("netcal")
    probs, labels, _ = data
    res = fitted(method)
    top, conf = top_label(probs)
    correct = (top == labels).astype(np.float64)
    ours = top_label(res.probs)[1]
    floor = argmax_floor(probs)
    for k in range(5):
        held = res.fold == k
        ref = _netcal_fit_transform(method, conf[~held], correct[~held], conf[held])
        free = ref > floor[held] + 1e-9
        assert free.mean() > 0.7
        np.testing.assert_allclose(ours[held][free], ref[free], rtol=0, atol=1e-12)
        assert np.all(ours[held][~free] >= ref[~free])
        np.testing.assert_allclose(ours[held][~free], floor[held][~free], rtol=0, atol=1e-9)


def test_bbq_looks_up_the_bins_it_was_fitted_with():
    """Why BBQ's lookup is ours: netcal fits each histogram with bins [a, b) but transforms with
    (a, b]. Items right exactly when their confidence is above 0.5: the histograms with an even
    bin count fit perfectly and get the weight, and 0.5 is on their edge. Fitted, 0.5 belongs to
    the upper bin (accuracy 1), as in our HistogramBinning and the ECE; netcal's transform sends
    it to the lower one (accuracy 0). Off the edges the two agree."""
    binning = pytest.importorskip("netcal.binning")
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 0.7, 200)
    correct = (conf > 0.5).astype(float)
    ours = CALIBRATORS["bbq"]().fit(*with_confidence(conf, correct))
    netcal_bbq = quietly(binning.BBQ().fit, conf, correct)
    assert ours.calibrate_confidence([0.5])[0] == pytest.approx(1.0, abs=0.01)
    assert ours.calibrate_confidence([0.5])[0] == pytest.approx(ours.calibrate_confidence([0.5 + 1e-9])[0])
    assert quietly(netcal_bbq.transform, np.array([0.5]))[0] == pytest.approx(0.0, abs=0.01)
    probe = np.array([0.41, 0.5 + 1e-9, 0.5 - 1e-9, 0.63])
    np.testing.assert_allclose(ours.calibrate_confidence(probe), quietly(netcal_bbq.transform, probe), atol=1e-12)


# --------------------------------------------------------------------------- ENIR: ours, and why
def _pooled(conf, correct):
    knots, inv = np.unique(conf, return_inverse=True)
    w = np.bincount(inv).astype(float)
    return knots, np.bincount(inv, weights=correct) / w, w


def test_near_isotonic_path_runs_from_the_perfect_fit_to_pav():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(3)
    conf = np.round(rng.uniform(0.3, 1.0, 400), 2)  # many ties: pooled into weighted points
    correct = (rng.random(400) < conf).astype(float)
    knots, y, w = _pooled(conf, correct)
    path = _near_isotonic_path(y, w)
    lams = [lam for lam, _, _ in path]
    assert lams[0] == 0.0 and np.all(np.diff(lams) > 0)
    np.testing.assert_allclose(path[0][1], y, atol=1e-12)  # lambda = 0: the data
    pav = IsotonicRegression().fit(knots, y, sample_weight=w).predict(knots)
    np.testing.assert_allclose(path[-1][1], pav, atol=1e-9)
    assert [g for _, _, g in path] == sorted((g for _, _, g in path), reverse=True)


def test_near_isotonic_path_solves_the_penalized_problem_brute_force():
    """Each map on the path minimizes 1/2 sum w (y - b)^2 + lam sum (b_i - b_{i+1})_+ at its lam
    (a small QP, solved with SLSQP: b and slacks u >= 0, u >= b_i - b_{i+1})."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(4)
    y = (rng.random(9) < np.linspace(0.2, 0.9, 9)).astype(float)
    y[[2, 6]] = [0.5, 0.25]
    w = rng.integers(1, 4, size=9).astype(float)
    m = y.size - 1
    for lam, b, _ in _near_isotonic_path(y, w)[1:]:
        def objective(v, lam=lam):
            return 0.5 * np.sum(w * (y - v[:9]) ** 2) + lam * np.sum(v[9:])

        cons = [{"type": "ineq", "fun": lambda v: v[9:]},
                {"type": "ineq", "fun": lambda v: v[9:] - (v[:m] - v[1:9])}]
        best = minimize(objective, np.r_[y, np.zeros(m)], constraints=cons, method="SLSQP",
                        options={"ftol": 1e-14, "maxiter": 500})
        np.testing.assert_allclose(b, best.x[:9], atol=1e-5)


def test_enir_weights_follow_netcals_bic_elbow(data, fitted):
    """Held-out confidences from the same folds: the average of the path's maps (after the perfect
    fit), weighted by netcal's model scoring and elbow cut (AbstractCalibration._elbow, with maps
    that follow our lookup), is our ENIR."""
    binning = pytest.importorskip("netcal.binning")
    probs, labels, _ = data
    res = fitted("enir")
    top, conf = top_label(probs)
    correct = (top == labels).astype(np.float64)
    floor = argmax_floor(probs)

    class Map:
        def __init__(self, knots, b, groups):
            self.mid, self.b, self.groups = (knots[:-1] + knots[1:]) / 2, b, groups

        def transform(self, x):
            return self.b[np.searchsorted(self.mid, x, side="left")]

        def get_degrees_of_freedom(self):
            return self.groups

    ours = top_label(res.probs)[1]
    for k in range(5):
        held = res.fold == k
        knots, y, w = _pooled(conf[~held], correct[~held])
        maps = [Map(knots, b, g) for _, b, g in _near_isotonic_path(y, w)[1:]]
        scorer = binning.ENIR()
        scorer.num_classes = 2
        weights, kept = quietly(scorer._elbow, conf[~held], correct[~held], maps, "bic", 0.001)
        ref = np.clip(sum(wt * m.transform(conf[held]) for wt, m in zip(weights, kept)), 0, 1)
        free = ref > floor[held] + 1e-9
        np.testing.assert_allclose(ours[held][free], ref[free], atol=1e-6)  # netcal scores in float32


def test_netcal_enir_is_wrong():
    """Why ENIR is ours. netcal 1.4.0's near-isotonic step writes into the model it starts from,
    fusing three groups at once leaves a range no group covers (mapped to 0), and it raises when
    the fitting items are all right or the path reaches a single group."""
    binning = pytest.importorskip("netcal.binning")
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.5, 1.0, 300)
    correct = (rng.random(300) < conf ** 1.5).astype(float)
    order = np.argsort(conf)
    first = quietly(binning.NearIsotonicRegression(quick_init=True).fit, conf[order], correct[order])
    before = first._group_values.copy()
    quietly(first.get_next_model)
    assert not np.array_equal(first._group_values, before)  # the step changed its predecessor

    netcal_enir = quietly(binning.ENIR().fit, conf, correct)
    probe = np.linspace(0.5, 1.0, 501)
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip").fit(conf, correct).predict(probe)
    ours = ENIR().fit(*with_confidence(conf, correct)).calibrate_confidence(probe)
    hole = (quietly(netcal_enir.transform, probe) == 0) & (iso > 0.3)
    assert hole.sum() > 10  # netcal: 0 where the isotonic fit says > 0.3
    assert not ((ours == 0) & (iso > 0.3)).any()

    for y in (np.ones(50), np.r_[np.ones(25), np.zeros(25)]):  # all right; accuracy falls with confidence
        x = np.linspace(0.5, 0.99, 50)
        with pytest.raises(ValueError):
            quietly(binning.ENIR().fit, x, y)
        out = ENIR().fit(*with_confidence(x, y)).calibrate_confidence(x)
        np.testing.assert_allclose(out, y.mean(), atol=1e-12)  # the isotonic fit is the constant


def test_enir_pools_tied_confidences():
    """120 items at confidence exactly 1.0 (90% right) above continuous ones: the tie is one
    point of the path, so 1.0 maps to their accuracy (netcal splits it between groups)."""
    rng = np.random.default_rng(1)
    conf = np.r_[np.ones(120), rng.uniform(0.3, 0.9, 280)]
    correct = np.r_[np.arange(120) % 10 != 0, rng.random(280) < 0.5].astype(float)
    enir = ENIR().fit(*with_confidence(conf, correct))
    assert enir.calibrate_confidence([1.0])[0] == pytest.approx(0.9, abs=1e-9)


# --------------------------------------------------------------------------- Dirichlet
def test_dirichlet_matches_multinomial_logistic_regression_on_the_same_folds():
    from sklearn.linear_model import LogisticRegression

    probs, labels, _ = overconfident(300, k=4, seed=5)
    res = cross_fit(lambda: DirichletCalibration(reg_off_diagonal=0.0, reg_intercept=0.0),
                    probs, labels, n_folds=5, seed=0)
    for k in range(5):
        held = res.fold == k
        lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=20_000)
        lr.fit(np.log(probs[~held]), labels[~held])
        np.testing.assert_allclose(res.probs[held], lr.predict_proba(np.log(probs[held])), atol=1e-5)
    default = cross_fit("dirichlet", probs, labels, n_folds=5, seed=0)
    assert np.abs(default.probs - res.probs).max() < 0.05  # the small ODIR penalty barely moves it


def test_dirichlet_can_change_the_prediction_and_lowers_ece():
    """A model biased towards option 0: the intercept moves mass off it, the argmax changes, and
    both accuracy and ECE improve out of sample."""
    rng = np.random.default_rng(6)
    z = rng.normal(0.0, 1.5, size=(600, 4))
    labels = np.minimum((rng.random((600, 1)) > np.cumsum(softmax(z), axis=1)).sum(axis=1), 3)
    biased = z * 2.0
    biased[:, 0] += 1.5
    probs = softmax(biased)
    res = cross_fit("dirichlet", probs, labels, n_folds=5, seed=0)
    assert (res.probs.argmax(axis=1) != probs.argmax(axis=1)).any()
    assert np.mean(res.probs.argmax(axis=1) == labels) > np.mean(probs.argmax(axis=1) == labels)
    assert expected_calibration_error(res.probs, labels) < 0.5 * expected_calibration_error(probs, labels)
    np.testing.assert_allclose(res.probs.sum(axis=1), 1.0, atol=1e-12)


def test_dirichlet_padding_and_zeros_stay_zero():
    probs, labels, _ = overconfident(200, k=3, seed=7)
    padded = np.column_stack([probs, np.zeros(len(probs))])  # every row: 3 options, one padding column
    dc = DirichletCalibration().fit(padded, labels)
    assert dc.weights_.shape == (3, 3)
    test = padded[:5].copy()
    test[0] = [0.7, 0.0, 0.3, 0.0]  # an option the model gave exactly 0
    out = dc.transform(test)
    np.testing.assert_array_equal(out[test == 0], 0.0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)


def test_dirichlet_needs_one_option_count():
    probs, labels, counts = overconfident(100, k=4, seed=8, ragged=True)
    message = "calibrator 'dirichlet' needs every item to have the same number of options, got 2 to 4"
    with pytest.raises(UserError, match=message):
        cross_fit("dirichlet", probs, labels)
    with pytest.raises(UserError, match=message):
        DirichletCalibration().fit(probs, labels, n_options=counts)
    dc = DirichletCalibration().fit(*overconfident(100, k=3, seed=9)[:2])
    with pytest.raises(UserError, match="fitted on 3 options, got items with 4"):
        dc.transform(overconfident(5, k=4, seed=9)[0])


# --------------------------------------------------------------------------- invariants, top label
@pytest.mark.parametrize("method", TOP_LABEL)
def test_top_label_invariants_and_ece_goes_down(data, fitted, method):
    probs, labels, counts = data
    out = fitted(method).probs
    np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_array_equal(out[probs == 0], 0.0)  # padding stays exactly 0
    # The other options keep their ratios.
    top, conf = top_label(probs)
    new_conf = top_label(out)[1]
    scale = (1 - new_conf) / (1 - conf)
    others = np.ones_like(probs, dtype=bool)
    others[np.arange(len(probs)), top] = False
    np.testing.assert_allclose(out[others], (probs * scale[:, None])[others], rtol=1e-9, atol=1e-15)
    before, after = expected_calibration_error(probs, labels), expected_calibration_error(out, labels)
    assert before > 0.1 and after < 0.6 * before


@pytest.mark.parametrize("method", TOP_LABEL)
def test_constant_correctness_and_confidence_one(method):
    """All-right fitting items give the constant map 1; confidences of exactly 1.0 (and a top
    option a hair above 1 within the sum tolerance) are accepted."""
    needs(method)
    probs, labels = with_confidence(np.linspace(0.5, 1.0, 40), np.ones(40))
    cal = CALIBRATORS[method]().fit(probs, labels)
    np.testing.assert_array_equal(cal.calibrate_confidence([0.6, 1.0]), [1.0, 1.0])
    mixed_p, mixed_y = with_confidence(np.r_[np.ones(10), np.linspace(0.4, 0.99, 50)], np.arange(60) % 3 > 0)
    mixed_p[0] = [1.0 + 1e-10, 0.0, 0.0, 0.0]
    out = CALIBRATORS[method]().fit(mixed_p, mixed_y).transform(mixed_p)
    assert np.isfinite(out).all() and np.all((out >= 0) & (out <= 1 + 1e-9))


# --------------------------------------------------------------------------- the CLI
def _cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "first_eval.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def preds(tmp_path_factory):
    from first_eval.predictions import write_predictions

    rows = []
    for model, sharpen, seed in (("teacher", 3.0, 10), ("student", 1.0, 11)):
        probs, labels, counts = overconfident(120, k=4, sharpen=sharpen, seed=seed, ragged=True)
        rows += [{"model": model, "dataset": "countries", "id": f"q{i}", "probs": probs[i, : counts[i]].tolist(),
                  "label": int(labels[i])} for i in range(len(labels))]
    return write_predictions(rows, tmp_path_factory.mktemp("calibrate") / "preds.jsonl")


def test_cli_calibrate_table_and_json(preds):
    from first_eval.predictions import group_predictions, read_predictions

    table = _cli("metrics", preds, "--calibrate", "isotonic").stdout
    models = [line.split()[0] for line in table.splitlines()[2:6]]
    assert models == ["teacher", "teacher+isotonic", "student", "student+isotonic"]
    assert "+isotonic: cross-fitted over 5 folds (seed 0)" in table

    from first_eval.results import compute_results

    out = json.loads(_cli("metrics", preds, "--json", "--calibrate", "isotonic", "--folds", "3", "--seed", "2",
                          "--compare", "teacher", "teacher+isotonic", "--bootstrap", "50").stdout)
    assert set(out) == {"results", "calibrated", "comparisons"}
    frame = read_predictions(preds)
    plain = compute_results(frame, n_bins=10, scheme="width", bootstrap=50, seed=2)
    assert out["results"] == json.loads(json.dumps(plain))  # the raw rows are unchanged
    group = next(group_predictions(frame))
    row = out["calibrated"][0]
    assert (row["model"], row["source_model"], row["method"], row["folds"], row["seed"]) == (
        "teacher+isotonic", "teacher", "isotonic", 3, 2)
    res = cross_fit("isotonic", group.probs, group.labels, n_folds=3, seed=2, n_options=group.n_options)
    expect = metric_suite(res.probs, group.labels, n_bins=10, scheme="width", n_options=group.n_options)
    assert row["n"] == expect["n"]
    for key in ("accuracy", "ece", "brier", "nll", "auroc"):
        assert row[key] == pytest.approx(expect[key], rel=1e-12, abs=1e-12)
    assert "ece_ci" in row and row["ece"] < plain[0]["ece"]
    assert out["comparisons"][0]["differences"]["ece"]["difference"] > 0  # raw minus calibrated


def test_cli_calibrate_with_netcal_keeps_stdout_json(preds):
    pytest.importorskip("netcal")
    proc = _cli("metrics", preds, "--json", "--calibrate", "beta")
    out = json.loads(proc.stdout)  # netcal's prints and pyro's warnings do not leak into it
    assert [r["model"] for r in out["calibrated"]] == ["teacher+beta", "student+beta"]
    assert proc.stderr == ""


def test_cli_calibrate_errors_are_one_line(preds, tmp_path):
    for args, message in (
        (("--calibrate", "platt"), "error: --calibrate: unknown method 'platt' (methods: temperature, histogram, "
                                   "isotonic, bbq, enir, beta, logistic, dirichlet)"),
        (("--calibrate", "dirichlet"), "needs every item to have the same number of options"),
    ):
        proc = _cli("metrics", preds, *args, check=False)
        assert proc.returncode == 2 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr


def test_cli_help_names_every_method():
    from first_eval.cli.metrics import metrics

    hints = typing.get_type_hints(metrics, include_extras=True)
    text = hints["calibrate"].__metadata__[0].help
    for name in CALIBRATORS:
        assert name in text
    import inspect

    assert inspect.signature(metrics).parameters["folds"].default == \
        inspect.signature(cross_fit).parameters["n_folds"].default


def test_dirichlet_cross_fit_never_uses_an_items_own_label_and_takes_n_options():
    probs, labels, counts = overconfident(200, k=3, seed=12)
    flipped = labels.copy()
    flipped[17] = (labels[17] + 1) % 3
    a = cross_fit("dirichlet", probs, labels, seed=3)
    b = cross_fit("dirichlet", probs, flipped, seed=3)
    np.testing.assert_array_equal(a.probs[17], b.probs[17])
    assert not np.array_equal(a.probs, b.probs)
    told = cross_fit("dirichlet", probs, labels, seed=3, n_options=counts)
    np.testing.assert_array_equal(a.probs, told.probs)


@pytest.mark.parametrize("method", ["bbq", "enir", "beta", "logistic", "dirichlet"])
def test_fitted_parameters_are_json(method):
    """The posthoc stage records ``fitted_params()`` (cross-fitted) or the public attributes
    (fitted on validation): plain values and arrays, never a netcal object."""
    needs(method)
    probs, labels, _ = overconfident(120, seed=13)
    cal = CALIBRATORS[method]().fit(probs, labels)
    json.dumps(cal.fitted_params())
    public = {k: v for k, v in vars(cal).items() if not k.startswith("_")}
    json.dumps(public, default=lambda o: o.tolist())  # AttributeError for anything but arrays
