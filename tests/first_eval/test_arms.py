"""Seed-aware statistics: arms of seed replicas, the two-level bootstrap, Holm and the MDE."""

from __future__ import annotations

import doctest
import math
from statistics import NormalDist

import numpy as np
import pytest

import first_eval.arms as arms
from first_eval.arms import (
    arm_difference,
    arm_of,
    compute_arm_comparisons,
    compute_arm_results,
    holm,
    holm_adjust,
    min_detectable,
    seed_indices,
    seed_of,
    two_level_bootstrap,
)
from first_eval.bootstrap import _percentile_ci, bootstrap_indices, bootstrap_metrics, paired_bootstrap
from first_eval.calibration import METRIC_NAMES, metric_suite
from first_eval.errors import UserError
from first_eval.predictions import to_frame
from first_eval.results import compute_comparisons, compute_results


def forecasts(n, k=4, *, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2.0
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if labels is None:
        labels = np.where(rng.random(n) < 0.6, p.argmax(axis=1), rng.integers(0, k, n))
    return p, np.asarray(labels)


def replicas(n, s, k=4, *, seed=0):
    """S replicas' forecasts of the same n items (shared labels)."""
    _, y = forecasts(n, k, seed=seed)
    return [forecasts(n, k, seed=seed + 100 + i, labels=y)[0] for i in range(s)], y


def same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_doctests():
    assert doctest.testmod(arms, raise_on_error=False).failed == 0


# ------------------------------------------------------------------ names
@pytest.mark.parametrize("model, arm, seed", [
    ("student-ce@0", "student-ce", 0),
    ("student-ce@12", "student-ce", 12),
    ("student-ce", "student-ce", None),
    ("a@b@3", "a@b", 3),
    ("x@v2", "x@v2", None),
    ("x@", "x@", None),
    ("@4", "@4", None),
    ("x@-1", "x@-1", None),
])
def test_arm_and_seed_of_a_model_name(model, arm, seed):
    assert arm_of(model) == arm
    assert seed_of(model) == seed


# ------------------------------------------------------------------ Holm
def test_holm_hand_worked():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(1*0.04, 0.06)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06], abs=1e-15)
    # sorted 0.001, 0.03, 0.04, 0.5 -> 0.004, 0.09, max(0.08, 0.09), 0.5
    assert holm([0.04, 0.001, 0.03, 0.5]) == pytest.approx([0.09, 0.004, 0.09, 0.5], abs=1e-15)
    assert holm([0.6, 0.7]) == [1.0, 1.0]           # capped at 1, monotone
    assert holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])
    assert holm([0.2]) == [0.2] and holm([]) == []


def test_holm_passes_nan_through_and_does_not_count_it():
    out = holm([0.02, float("nan"), 0.01])
    assert math.isnan(out[1])
    assert [out[0], out[2]] == pytest.approx([0.02, 0.02])   # m = 2, not 3
    assert all(math.isnan(p) for p in holm([float("nan")] * 2))


def test_holm_of_all_ones_and_bad_input():
    assert holm([1.0, 1.0, 1.0]) == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="p-values in"):
        holm([0.5, 1.5])


# ------------------------------------------------------------------ MDE
def test_min_detectable():
    assert min_detectable(0.01) == pytest.approx(0.028016, abs=1e-5)
    z = NormalDist()
    assert min_detectable(0.02, alpha=0.01, power=0.9) == pytest.approx(
        (z.inv_cdf(0.995) + z.inv_cdf(0.9)) * 0.02, rel=1e-12)
    assert min_detectable(1.0, alpha=0.1, power=0.5) == pytest.approx(z.inv_cdf(0.95), rel=1e-12)
    assert min_detectable(0.0) == 0.0
    assert math.isnan(min_detectable(float("nan")))
    for kwargs in (dict(alpha=0.0), dict(alpha=1.0), dict(power=1.0), dict(power=0)):
        with pytest.raises(ValueError, match="Expected"):
            min_detectable(0.01, **kwargs)
    with pytest.raises(ValueError, match="non-negative"):
        min_detectable(-0.1)


# ------------------------------------------------------------------ two-level bootstrap
def test_seed_indices_are_the_documented_generator_and_a_prefix():
    rng = np.random.default_rng(np.random.SeedSequence(9, spawn_key=(0x5EED, 1)))
    expected = rng.integers(0, 3, size=(200, 3))
    assert np.array_equal(seed_indices(3, n_resamples=200, seed=9, tag=1), expected)
    assert np.array_equal(seed_indices(3, n_resamples=50, seed=9, tag=1), expected[:50])
    assert not np.array_equal(seed_indices(3, n_resamples=200, seed=9, tag=0), expected)
    assert seed_indices(3, n_resamples=200, seed=9).min() == 0
    assert seed_indices(3, n_resamples=200, seed=9).max() == 2
    with pytest.raises(ValueError, match="n_seeds"):
        seed_indices(0, n_resamples=5)


def test_one_replica_is_the_item_bootstrap_bit_for_bit():
    (p,), y = replicas(60, 1, seed=1)
    two = two_level_bootstrap([p], y, n_resamples=70, seed=3, n_bins=7, scheme="mass")
    one = bootstrap_metrics(p, y, n_resamples=70, seed=3, n_bins=7, scheme="mass")
    assert list(two) == list(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert np.array_equal(two[name], one[name], equal_nan=True), name


def brute_force(probs_by_seed, y, *, n_resamples, seed, tag=0, n_bins=10):
    """Resample b: the item bootstrap's items for b, replicas drawn from the documented generator."""
    s = len(probs_by_seed)
    idx = bootstrap_indices(len(y), n_resamples=n_resamples, seed=seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5EED, tag)))
    draws = rng.integers(0, s, size=(n_resamples, s))
    out = {name: np.empty(n_resamples) for name in METRIC_NAMES}
    for b in range(n_resamples):
        suites = [metric_suite(probs_by_seed[r][idx[b]], y[idx[b]], n_bins=n_bins) for r in draws[b]]
        for name in METRIC_NAMES:
            out[name][b] = np.mean([x[name] for x in suites])
    return out


def test_three_replicas_equal_a_brute_force_reference():
    probs, y = replicas(40, 3, seed=2)
    got = two_level_bootstrap(probs, y, n_resamples=50, seed=5)
    ref = brute_force(probs, y, n_resamples=50, seed=5)
    for name in METRIC_NAMES:
        np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=1e-12, err_msg=name)
    # the item level is shared: the first replica alone on the same seed gives different values
    assert not np.array_equal(got["accuracy"], bootstrap_metrics(probs[0], y, n_resamples=50, seed=5,
                                                                 metrics="accuracy")["accuracy"])


def test_the_same_seed_gives_the_same_values_and_resamples_are_a_prefix():
    probs, y = replicas(50, 3, seed=3)
    a = two_level_bootstrap(probs, y, n_resamples=80, seed=1, metrics=["accuracy", "ece"])
    b = two_level_bootstrap(probs, y, n_resamples=80, seed=1, metrics=["accuracy", "ece"])
    few = two_level_bootstrap(probs, y, n_resamples=30, seed=1, metrics=["accuracy", "ece"])
    assert list(a) == ["accuracy", "ece"]
    for name in a:
        assert np.array_equal(a[name], b[name])
        np.testing.assert_allclose(few[name], a[name][:30], rtol=0, atol=1e-15)


def hand_worked(n_right, n=200):
    """n items of label 0, the first ``n_right`` answered right with confidence 0.7."""
    p = np.tile([0.3, 0.7], (n, 1))
    p[:n_right] = [0.7, 0.3]
    return p


def test_hand_worked_seed_spread_widens_the_interval():
    y = np.zeros(200, dtype=int)
    a, b, mid = hand_worked(100), hand_worked(140), hand_worked(120)   # accuracy 0.5, 0.7, 0.6
    frame = to_frame([{"model": m, "dataset": "d", "id": str(i), "probs": list(p[i]), "label": 0}
                      for m, p in (("arm@0", a), ("arm@1", b), ("one", mid)) for i in range(200)])
    rows = {r["model"]: r for r in compute_arm_results(frame, n_bins=10, scheme="width",
                                                       bootstrap=400, seed=0)}
    arm, one = rows["arm"], rows["one"]
    assert arm["accuracy"] == pytest.approx(0.6) and one["accuracy"] == pytest.approx(0.6)
    assert arm["accuracy_seeds"] == [0.5, 0.7]
    assert arm["accuracy_seed_sd"] == pytest.approx(math.sqrt(0.02))       # sd of {0.5, 0.7}
    assert one["accuracy_seeds"] == [0.6] and one["accuracy_seed_sd"] is None
    lo, hi = arm["accuracy_ci"]
    lo1, hi1 = one["accuracy_ci"]
    # item noise only: about 0.6 +- 1.96 * sqrt(0.24 / 200) = +-0.068; with the seeds drawn,
    # a quarter of the resamples are both 0.5 and a quarter both 0.7
    assert hi1 - lo1 == pytest.approx(2 * 1.96 * math.sqrt(0.24 / 200), rel=0.2)
    assert hi - lo > 1.5 * (hi1 - lo1)
    assert lo < 0.52 and hi > 0.68
    # S identical replicas: the seed level adds nothing
    same_three = two_level_bootstrap([mid] * 3, y, n_resamples=400, seed=0)
    single = bootstrap_metrics(mid, y, n_resamples=400, seed=0)
    for name in METRIC_NAMES:
        np.testing.assert_allclose(same_three[name], single[name], rtol=0, atol=1e-12, equal_nan=True)
        assert _percentile_ci(same_three[name], 0.95) == pytest.approx(_percentile_ci(single[name], 0.95),
                                                                        abs=1e-12, nan_ok=True)


def test_two_level_bad_input():
    probs, y = replicas(20, 2)
    with pytest.raises(ValueError, match="at least one seed replica"):
        two_level_bootstrap([], y, n_resamples=5)
    with pytest.raises(ValueError, match="Expected labels of shape"):   # a replica on other items
        two_level_bootstrap([probs[0], probs[1][:10]], y, n_resamples=5)
    with pytest.raises(ValueError, match="Expected labels of shape"):
        arm_difference([probs[0]], [probs[1][:10]], y, n_resamples=5)
    with pytest.raises(ValueError, match="list of"):
        two_level_bootstrap(probs[0], y, n_resamples=5)
    with pytest.raises(ValueError, match="Expected n_resamples"):
        two_level_bootstrap(probs, y, n_resamples=0)
    with pytest.raises(ValueError, match="Expected metrics"):
        two_level_bootstrap(probs, y, n_resamples=5, metrics=["f1"])


# ------------------------------------------------------------------ arm differences
def test_arm_difference_with_one_replica_each_is_the_paired_bootstrap():
    probs, y = replicas(80, 2, seed=4)
    got = arm_difference([probs[0]], [probs[1]], y, n_resamples=120, seed=2, n_bins=10, scheme="width")
    ref = paired_bootstrap(probs[0], probs[1], y, n_resamples=120, seed=2)
    va = bootstrap_metrics(probs[0], y, n_resamples=120, seed=2)
    vb = bootstrap_metrics(probs[1], y, n_resamples=120, seed=2)
    for name in METRIC_NAMES:
        g, r = got[name], ref[name]
        assert same(g["difference"], r.difference) and same(g["p_value"], r.p_value), name
        assert same(g["ci"][0], r.ci_low) and same(g["ci"][1], r.ci_high), name
        d = va[name] - vb[name]
        d = d[np.isfinite(d)]
        assert same(g["se"], float(np.std(d, ddof=1))), name
        assert same(g["mde"], min_detectable(g["se"])), name
        assert g["n_seeds_a"] == 1 and g["n_seeds_b"] == 1


def test_arm_difference_equals_a_brute_force_reference():
    probs, y = replicas(30, 5, seed=6)
    a, b = probs[:2], probs[2:]
    got = arm_difference(a, b, y, n_resamples=40, seed=8, level=0.9, power=0.9, metrics=["accuracy", "ece"])
    ra = brute_force(a, y, n_resamples=40, seed=8, tag=0)
    rb = brute_force(b, y, n_resamples=40, seed=8, tag=1)
    for name in ("accuracy", "ece"):
        d = ra[name] - rb[name]
        g = got[name]
        full = (np.mean([metric_suite(p, y)[name] for p in a]) - np.mean([metric_suite(p, y)[name] for p in b]))
        assert g["difference"] == pytest.approx(full, abs=1e-12)
        assert g["ci"] == pytest.approx(list(np.quantile(d, [0.05, 0.95])), abs=1e-12)
        assert g["se"] == pytest.approx(np.std(d, ddof=1), abs=1e-12)
        assert g["mde"] == pytest.approx(min_detectable(g["se"], alpha=0.1, power=0.9), rel=1e-9)
        p = min(1.0, 2 * min((1 + (d <= 0).sum()) / 41, (1 + (d >= 0).sum()) / 41))
        assert g["p_value"] == pytest.approx(p)
        assert (g["n_seeds_a"], g["n_seeds_b"]) == (2, 3)


def test_arm_difference_of_an_arm_with_itself_is_centred_on_zero():
    probs, y = replicas(60, 3, seed=7)
    got = arm_difference(probs, probs, y, n_resamples=200, seed=0, metrics=["accuracy"])["accuracy"]
    assert got["difference"] == 0
    assert got["ci"][0] < 0 < got["ci"][1] and got["p_value"] > 0.2   # seeds drawn independently
    assert got["se"] > 0


def test_arm_difference_p_value_is_nan_safe():
    p = np.array([[0.9, 0.1]] * 10)
    y = np.zeros(10, dtype=int)         # all right: AUROC undefined everywhere
    got = arm_difference([p], [p, p], y, n_resamples=20, metrics=["auroc", "accuracy"])
    assert math.isnan(got["auroc"]["p_value"]) and math.isnan(got["auroc"]["se"])
    assert math.isnan(got["auroc"]["mde"]) and all(math.isnan(v) for v in got["auroc"]["ci"])
    assert got["accuracy"]["p_value"] == 1.0 and got["accuracy"]["se"] == 0.0


# ------------------------------------------------------------------ tables
def table(n=30, *, drop=None, shuffle=None):
    """Datasets d1, d2; plain model "base", single replica "solo@5", arms ce (0, 1, 2), kd (0, 1)."""
    models = ["base", "ce@0", "ce@1", "ce@2", "kd@0", "kd@1", "solo@5"]
    rows = []
    for dn, dataset in enumerate(("d1", "d2")):
        probs, y = replicas(n, len(models), k=3 + dn, seed=10 * dn)
        for m, p in zip(models, probs):
            order = list(range(n))
            if shuffle == (m, dataset):
                order = list(np.random.default_rng(0).permutation(n))
            for i in order:
                if drop == (m, dataset, i):
                    continue
                rows.append({"model": m, "dataset": dataset, "id": f"q{i}", "probs": list(p[i]),
                             "label": int(y[i])})
    return to_frame(rows)


def test_arm_results_single_replica_rows_equal_compute_results():
    frame = table()
    plain = {(r["model"], r["dataset"]): r for r in compute_results(frame, n_bins=10, scheme="width",
                                                                     bootstrap=60, seed=3)}
    rows = compute_arm_results(frame, n_bins=10, scheme="width", bootstrap=60, seed=3)
    assert [(r["model"], r["dataset"]) for r in rows] == [
        (a, d) for d in ("d1", "d2") for a in ("base", "ce", "kd", "solo")]
    got = {(r["model"], r["dataset"]): r for r in rows}
    for arm, model in (("base", "base"), ("solo", "solo@5")):
        for dataset in ("d1", "d2"):
            row, ref = got[(arm, dataset)], plain[(model, dataset)]
            assert row["n"] == ref["n"] == 30 and row["n_seeds"] == 1
            assert row["seeds"] == ([] if arm == "base" else [5])
            for name in METRIC_NAMES:
                assert same(row[name], ref[name]), name
                assert row[f"{name}_ci"] == ref[f"{name}_ci"] or all(
                    map(same, row[f"{name}_ci"], ref[f"{name}_ci"])), name
                assert row[f"{name}_seed_sd"] is None
                assert len(row[f"{name}_seeds"]) == 1 and same(row[f"{name}_seeds"][0], ref[name])


def test_arm_results_multi_replica_rows():
    frame = table(shuffle=("ce@1", "d1"))      # items of one replica in another order
    plain = {(r["model"], r["dataset"]): r for r in compute_results(frame, n_bins=10, scheme="width",
                                                                     bootstrap=0, seed=0)}
    rows = compute_arm_results(frame, n_bins=10, scheme="width", bootstrap=50, seed=1)
    got = {(r["model"], r["dataset"]): r for r in rows}
    for arm, seeds in (("ce", [0, 1, 2]), ("kd", [0, 1])):
        for dataset in ("d1", "d2"):
            row = got[(arm, dataset)]
            assert row["n_seeds"] == len(seeds) and row["seeds"] == seeds and row["n"] == 30
            for name in ("accuracy", "ece", "nll", "brier"):
                per_seed = [plain[(f"{arm}@{s}", dataset)][name] for s in seeds]
                assert row[f"{name}_seeds"] == pytest.approx(per_seed, abs=1e-12)
                assert row[name] == pytest.approx(np.mean(per_seed), abs=1e-12)
                assert row[f"{name}_seed_sd"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)
                lo, hi = row[f"{name}_ci"]
                assert lo <= hi
    assert got[("ce", "d1")]["accuracy_ci"] != got[("ce", "d2")]["accuracy_ci"]
    keys = list(got[("ce", "d1")])
    assert keys[:5] == ["model", "dataset", "n", "n_seeds", "seeds"]
    assert keys[5:5 + len(METRIC_NAMES)] == list(METRIC_NAMES)
    no_ci = compute_arm_results(frame, n_bins=10, scheme="width", bootstrap=0, seed=1)
    assert not any(k.endswith("_ci") for k in no_ci[0])


def test_arm_results_ci_is_the_two_level_bootstrap_on_the_first_replicas_item_order():
    frame = table(shuffle=("kd@1", "d2"))
    row = next(r for r in compute_arm_results(frame, n_bins=10, scheme="width", bootstrap=40, seed=2)
               if (r["model"], r["dataset"]) == ("kd", "d2"))
    from first_eval.predictions import group_predictions

    groups = {g.model: g for g in group_predictions(frame) if g.dataset == "d2"}
    first, second = groups["kd@0"], groups["kd@1"]
    pos = {item: i for i, item in enumerate(second.ids)}
    aligned = second.probs[[pos[i] for i in first.ids]]
    values = two_level_bootstrap([first.probs, aligned], first.labels, n_resamples=40, seed=2)
    for name in ("accuracy", "ece"):
        assert row[f"{name}_ci"] == list(_percentile_ci(values[name], 0.95))


def test_misaligned_replicas_raise():
    frame = table(drop=("ce@1", "d2", 4))
    with pytest.raises(ValueError, match="arm 'ce' on dataset 'd2'.*not scored on the same items"):
        compute_arm_results(frame, n_bins=10, scheme="width", bootstrap=0, seed=0)
    rows = frame.to_dict("records")
    for r in rows:
        if r["model"] == "kd@1" and r["dataset"] == "d1" and r["id"] == "q3":
            r["label"] = (r["label"] + 1) % 3
    with pytest.raises(ValueError, match="item 'q3' has label .* on dataset 'd1' \\(arm 'kd'\\)"):
        compute_arm_results(to_frame(rows), n_bins=10, scheme="width", bootstrap=0, seed=0)
    mixed = to_frame(rows + [{**rows[0], "model": "ce"}])
    with pytest.raises(UserError, match="both a plain model 'ce' and seed replicas"):
        compute_arm_results(mixed, n_bins=10, scheme="width", bootstrap=0, seed=0)


def test_arm_comparisons_single_replica_equal_compute_comparisons():
    frame = table()
    got = compute_arm_comparisons(frame, "base", "solo", n_bins=10, scheme="width", bootstrap=80, seed=4)
    ref = compute_comparisons(frame, "base", "solo@5", n_bins=10, scheme="width", bootstrap=80, seed=4)
    assert len(got) == len(ref) == 2
    for g, r in zip(got, ref):
        assert (g["model_a"], g["model_b"]) == ("base", "solo")
        assert (g["dataset"], g["n"], g["n_resamples"]) == (r["dataset"], r["n"], r["n_resamples"])
        assert (g["n_seeds_a"], g["n_seeds_b"]) == (1, 1)
        assert list(g["differences"]) == list(r["differences"])
        for name, d in g["differences"].items():
            e = r["differences"][name]
            assert set(d) == {"difference", "ci", "p_value", "se", "mde"}
            assert same(d["difference"], e["difference"]) and same(d["p_value"], e["p_value"]), name
            assert all(map(same, d["ci"], e["ci"])), name
            assert same(d["mde"], min_detectable(d["se"]))


def test_arm_comparisons_multi_replica_on_shared_items():
    frame = table(drop=("kd@1", "d1", 7))
    rows = compute_arm_comparisons(frame, "ce", "kd", n_bins=10, scheme="width", bootstrap=60, seed=0,
                                   level=0.9, power=0.9)
    assert [r["dataset"] for r in rows] == ["d1", "d2"]
    assert [r["n"] for r in rows] == [29, 30]           # q7 missing from one replica of kd
    r = rows[0]
    assert list(r)[:7] == ["model_a", "model_b", "dataset", "n", "n_resamples", "n_seeds_a", "n_seeds_b"]
    assert (r["n_seeds_a"], r["n_seeds_b"], r["n_resamples"]) == (3, 2, 60)
    # the same as arm_difference on the shared items in ce@0's order
    from first_eval.predictions import group_predictions

    groups = {g.model: g for g in group_predictions(frame) if g.dataset == "d1"}
    keep = [i for i, item in enumerate(groups["ce@0"].ids) if item != "q7"]
    ids = groups["ce@0"].ids[keep]

    def at(model):
        pos = {item: i for i, item in enumerate(groups[model].ids)}
        return groups[model].probs[[pos[i] for i in ids]]

    ref = arm_difference([at("ce@0"), at("ce@1"), at("ce@2")], [at("kd@0"), at("kd@1")],
                         groups["ce@0"].labels[keep], n_resamples=60, seed=0, n_bins=10, scheme="width",
                         level=0.9, power=0.9)
    for name in METRIC_NAMES:
        d, e = r["differences"][name], ref[name]
        for key in ("difference", "p_value", "se", "mde"):
            assert same(d[key], e[key]), (name, key)
        assert all(map(same, d["ci"], e["ci"]))
    assert r["differences"]["accuracy"]["mde"] == pytest.approx(
        min_detectable(r["differences"]["accuracy"]["se"], alpha=0.1, power=0.9))


def test_arm_comparisons_errors():
    frame = table()
    with pytest.raises(UserError, match="no arm 'nope'"):
        compute_arm_comparisons(frame, "ce", "nope", n_bins=10, scheme="width", bootstrap=10, seed=0)
    only_d1 = frame[~((frame["model"].str.startswith("kd")) & (frame["dataset"] == "d1"))]
    only_d1 = only_d1[~((only_d1["model"].str.startswith("ce")) & (only_d1["dataset"] == "d2"))]
    with pytest.raises(UserError, match="not scored on a common dataset"):
        compute_arm_comparisons(only_d1, "ce", "kd", n_bins=10, scheme="width", bootstrap=10, seed=0)
    with pytest.raises(ValueError, match="Expected n_resamples"):
        compute_arm_comparisons(frame, "ce", "kd", n_bins=10, scheme="width", bootstrap=0, seed=0)


# ------------------------------------------------------------------ Holm over datasets
def test_holm_adjust_families():
    def row(a, b, dataset, p_acc, p_ece):
        return {"model_a": a, "model_b": b, "dataset": dataset,
                "differences": {"accuracy": {"p_value": p_acc}, "ece": {"p_value": p_ece},
                                "nll": {"p_value": 0.01}}}

    rows = [row("ce", "kd", "d1", 0.01, 0.04), row("ce", "kd", "d2", 0.04, 0.5),
            row("ce", "kd", "d3", 0.03, float("nan")), row("ce", "base", "d1", 0.02, 0.2),
            row("kd", "ce", "d1", 0.3, 0.3)]
    del rows[3]["differences"]["ece"]
    holm_adjust(rows)
    acc = [r["differences"]["accuracy"]["p_holm"] for r in rows]
    assert acc[:3] == pytest.approx([0.03, 0.06, 0.06])          # family (ce, kd, accuracy)
    assert acc[3] == pytest.approx(0.02) and acc[4] == pytest.approx(0.3)  # families of one
    ece = [r["differences"]["ece"]["p_holm"] for r in (rows[0], rows[1], rows[2], rows[4])]
    assert ece[:2] == pytest.approx([0.08, 0.5]) and math.isnan(ece[2]) and ece[3] == pytest.approx(0.3)
    assert "ece" not in rows[3]["differences"]
    assert all("p_holm" not in r["differences"]["nll"] for r in rows)
    holm_adjust(rows, metrics="nll")
    assert [r["differences"]["nll"]["p_holm"] for r in rows[:3]] == pytest.approx([0.03] * 3)


def test_holm_adjust_on_computed_comparisons():
    frame = table()
    rows = compute_arm_comparisons(frame, "ce", "kd", n_bins=10, scheme="width", bootstrap=30, seed=0)
    holm_adjust(rows)
    for name in ("accuracy", "ece"):
        ps = [r["differences"][name]["p_value"] for r in rows]
        assert [r["differences"][name]["p_holm"] for r in rows] == holm(ps)
