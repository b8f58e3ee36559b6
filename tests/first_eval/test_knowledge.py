"""Concentrated-knowledge maths against brute force over small vocabularies."""

import numpy as np
import pytest

from first_eval.knowledge import TopK, kl_full_vs_topk, mass_at_k, summarize


def _random_dists(n, V, seed=0, sharp=3.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, V)) * sharp
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _topk(p, max_k):
    srt = -np.sort(-p, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.sum(np.where(p > 0, p * np.log(p), 0), axis=1)
    return TopK(srt[:, :max_k], plogp, p.shape[1])


def test_mass_at_k_is_cumulative_sorted_mass():
    p = _random_dists(50, 30)
    m = mass_at_k(_topk(p, 10).probs)
    for i in range(50):
        srt = sorted(p[i], reverse=True)
        for k in range(1, 11):
            assert m[i, k - 1] == pytest.approx(sum(srt[:k]), abs=1e-12)


def test_kl_matches_brute_force():
    V = 25
    p = _random_dists(40, V, seed=1)
    kl = kl_full_vs_topk(_topk(p, 8))
    for i in range(40):
        order = np.argsort(-p[i], kind="stable")
        for k in range(1, 9):
            q = np.full(V, (1 - p[i, order[:k]].sum()) / (V - k))
            q[order[:k]] = p[i, order[:k]]
            brute = float(np.sum(p[i] * np.log(p[i] / q)))
            assert kl[i, k - 1] == pytest.approx(brute, abs=1e-10)


def test_kl_zero_when_topk_holds_everything():
    p = np.zeros((1, 10))
    p[0, :3] = [0.5, 0.3, 0.2]
    kl = kl_full_vs_topk(_topk(p, 5))
    assert kl[0, 2:] == pytest.approx(0.0, abs=1e-12)
    assert kl[0, 0] > 0


def test_summary_fields():
    p = _random_dists(30, 40, seed=2, sharp=5.0)
    s = summarize(_topk(p, 20), positions="all")
    assert s["n_positions"] == 30 and s["k"] == list(range(1, 21))
    assert np.all(np.diff(s["mass_mean"]) >= 0)
    assert np.all(np.diff(s["kl_full_vs_topk_mean"]) <= 1e-12)
    assert sum(s["mass5_histogram"]["counts"]) == 30
    assert s["full_row_bytes_fp16"] == 80


@pytest.mark.parametrize("k", [1, 2, 5, 8, 20])
@pytest.mark.parametrize("vocab", [49152, 100_000])
def test_bytes_formula_matches_the_store(k, vocab):
    from first_eval.knowledge import store_bytes_per_position
    from first_train.store.codec import payload_bytes_per_position

    assert store_bytes_per_position(k, vocab) == payload_bytes_per_position(k, vocab)
