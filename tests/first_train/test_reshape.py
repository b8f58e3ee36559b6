"""Trustworthy maximization: p/c re-shaping, log-prob temperature, two-stage grid search."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from first_train.reshape import (
    COARSE_C_GRID,
    GridResult,
    grid_search_c,
    reshape_topk,
    temperature_logprobs,
    two_stage_grid_search,
)


# --------------------------------------------------------------------------- reshape_topk
def test_reshape_topk_matches_the_formula_by_hand():
    p = [0.6, 0.25, 0.1, 0.03, 0.02]
    c = 0.3
    denom = sum(math.exp(x / c) for x in p)
    expected = [math.exp(x / c) / denom for x in p]
    np.testing.assert_allclose(reshape_topk(np.array(p), c), expected, rtol=1e-12)
    got = reshape_topk(torch.tensor(p, dtype=torch.float64), c)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_reshape_topk_shapes_order_and_limits():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=(3, 4)) * 0.97
    for c in (0.05, 0.3, 1.0, 10.0):
        q = reshape_topk(p, c)
        assert q.shape == p.shape
        np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-12)
        # monotone: the ranking of the k tokens is preserved
        ranks = np.argsort(-p, axis=-1, kind="stable")
        assert (np.argsort(-q, axis=-1, kind="stable") == ranks).all()
    # small c sharpens towards the top-1, large c flattens towards uniform
    assert (reshape_topk(p, 1e-3).max(-1) > 0.999).all()
    np.testing.assert_allclose(reshape_topk(p, 1e6), 0.2, atol=1e-6)
    # torch path keeps dtype and agrees with numpy
    t = reshape_topk(torch.tensor(p, dtype=torch.float32), 0.2)
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), reshape_topk(p, 0.2), rtol=1e-5)


@pytest.mark.parametrize("c", [0, -0.1, float("nan"), float("inf"), True, "0.5"])
def test_reshape_topk_rejects_bad_c(c):
    with pytest.raises(ValueError, match="c > 0"):
        reshape_topk(np.array([0.5, 0.5]), c)


def test_temperature_logprobs():
    lp = np.log(np.array([[0.7, 0.2, 0.1]]))
    np.testing.assert_allclose(temperature_logprobs(lp, 1.0), lp, atol=1e-12)
    t2 = np.exp(temperature_logprobs(lp, 2.0))
    expected = np.sqrt([0.7, 0.2, 0.1]) / np.sqrt([0.7, 0.2, 0.1]).sum()
    np.testing.assert_allclose(t2[0], expected, rtol=1e-12)
    # unnormalized input (logits) is normalized too; torch agrees
    logits = torch.tensor([[3.0, 1.0, -2.0]], dtype=torch.float64)
    out = temperature_logprobs(logits, 0.5)
    np.testing.assert_allclose(out.exp().sum(-1).numpy(), 1.0)
    np.testing.assert_allclose(out.numpy(), temperature_logprobs(logits.numpy(), 0.5), rtol=1e-12)
    with pytest.raises(ValueError, match="temperature > 0"):
        temperature_logprobs(lp, 0.0)


# --------------------------------------------------------------------------- grid search
def test_coarse_grid_is_design_grid():
    assert COARSE_C_GRID == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@pytest.mark.parametrize("c_star", [0.013, 0.07, 0.237, 0.5, 0.61, 0.99, 1.04])
def test_grid_finds_minimum_of_a_smooth_curve_within_fine_step(c_star):
    # a convex, monotone-on-each-side ECE curve with its minimum at c_star
    result = grid_search_c(lambda c: 0.2 if c is None else 0.01 + (c - c_star) ** 2, baseline=True)
    assert result.best_c is not None
    assert abs(result.best_c - c_star) <= 0.02 / 2 + 1e-9 or (
        c_star < 0.02 and result.best_c == 0.02  # the grid's smallest point
    )


def test_grid_result_is_the_minimum_of_everything_evaluated():
    rng = np.random.default_rng(3)
    table = {}

    def ece(c):
        key = None if c is None else round(c, 6)
        if key not in table:
            table[key] = float(rng.uniform(0.01, 0.3))
        return table[key]

    r = grid_search_c(ece)
    evaluated = [e for _, e in r.grid] + [r.ece_before]
    assert r.best_ece <= min(evaluated)
    assert r.best_ece <= r.ece_before  # never raises validation ECE
    if r.best_c is not None:
        assert dict(r.grid)[r.best_c] == r.best_ece


def test_grid_order_and_points():
    calls = []

    def ece(c):
        calls.append(c)
        return 1.0 if c is None else abs(c - 0.4)

    r = grid_search_c(ece)
    coarse = [c for c, _ in r.grid[:10]]
    fine = [c for c, _ in r.grid[10:]]
    assert coarse == list(COARSE_C_GRID)
    assert fine == [0.32, 0.34, 0.36, 0.38, 0.42, 0.44, 0.46, 0.48]  # 0.3, 0.4, 0.5 reused
    assert calls[-1] is None and calls.count(None) == 1
    assert len(set(calls[:-1])) == len(calls) - 1  # no candidate evaluated twice
    assert r.best_c == 0.4 and r.best_ece == 0.0


def test_fine_grid_excludes_non_positive_candidates():
    r = grid_search_c(lambda c: c, baseline=False)  # best coarse is 0.1
    assert all(c > 0 for c, _ in r.grid)
    assert r.best_c == 0.02 and r.ece_before is None


def test_ties_go_to_the_smallest_c():
    r = grid_search_c(lambda c: 0.5 if c is None else (0.1 if c >= 0.3 else 0.2))
    assert r.best_c == pytest.approx(0.3)
    flat = grid_search_c(lambda c: 0.1, baseline=False)
    assert flat.best_c == 0.02  # all equal -> the smallest evaluated c


def test_baseline_wins_when_no_candidate_is_better():
    r = grid_search_c(lambda c: 0.05 if c is None else 0.05 + (c or 0))
    assert r.best_c is None and r.best_ece == 0.05 == r.ece_before
    cal = r.as_calibration("topk-reshape")
    assert cal["temperature"] is None and cal["ece_after"] == cal["ece_before"]


def test_as_calibration_record():
    r = GridResult(best_c=0.3, best_ece=0.02, ece_before=0.1, grid=((0.3, 0.02), (0.4, 0.05)))
    assert r.as_calibration("topk-reshape") == {
        "method": "topk-reshape",
        "temperature": 0.3,
        "ece_before": 0.1,
        "ece_after": 0.02,
        "grid": [[0.3, 0.02], [0.4, 0.05]],
    }


def test_generic_search_for_log_temperature():
    r = two_stage_grid_search(
        lambda t: 0.3 if t is None else abs(t - 1.7), [0.5, 1.0, 1.5, 2.0, 3.0],
        fine_step=0.1, fine_radius=0.5,
    )
    assert r.best_c == pytest.approx(1.7)


@pytest.mark.parametrize("bad", [lambda c: float("nan"), lambda c: "x", lambda c: None])
def test_bad_callback_values_raise(bad):
    with pytest.raises(ValueError, match="ece_fn"):
        grid_search_c(bad)


def test_bad_grid_arguments_raise():
    with pytest.raises(ValueError, match="coarse"):
        two_stage_grid_search(lambda c: 0.0, [], fine_step=0.1, fine_radius=0.1)
    with pytest.raises(ValueError, match="coarse candidate"):
        two_stage_grid_search(lambda c: 0.0, [0.0, 0.5], fine_step=0.1, fine_radius=0.1)
    with pytest.raises(ValueError, match="fine_step"):
        grid_search_c(lambda c: 0.0, fine_step=0)
    with pytest.raises(ValueError, match="fine_radius"):
        grid_search_c(lambda c: 0.0, fine_radius=-1)
