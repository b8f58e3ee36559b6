"""Scoring with shared bottom layers (:class:`first_eval.layers.SharedBottom`) gives the full
forward's probabilities, and falls back to the full forward for a model that does not share them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from first_eval.data import load_dataset
from first_eval.layers import SharedBottom
from first_eval.scorer import Scorer
from tiny_models import make_tiny_llama


def _perturbed(model, layer: int, seed: int):
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.model.layers[layer].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return out


def _probs(model, tok, items, **kw):
    return np.array([s.probs for s in Scorer(model, tok, progress=False, batch_tokens=256, **kw).score(items)])


@pytest.fixture(scope="module")
def four_layers(smollm2_tokenizer):
    return make_tiny_llama(smollm2_tokenizer, num_hidden_layers=4), smollm2_tokenizer


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_shared_bottom_equals_full_forward(four_layers, padding_side):
    base, tok = four_layers
    items = load_dataset("countries", split="val", limit=40)
    shared = SharedBottom(2)
    students = [_perturbed(base, 3, seed) for seed in range(3)] + [_perturbed(base, 2, 9)]
    got = [_probs(m, tok, items, padding_side=padding_side, shared_bottom=shared) for m in [base, *students]]
    want = [_probs(m, tok, items, padding_side=padding_side) for m in [base, *students]]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)
    assert shared.hits > 0 and shared.computed > 0 and shared.full == 0  # every model read the base's states
    assert shared.describe()["batches"] == shared.computed


def test_a_model_with_other_bottom_layers_is_scored_in_full(four_layers):
    base, tok = four_layers
    items = load_dataset("countries", split="val", limit=40)
    shared = SharedBottom(2)
    _probs(base, tok, items, shared_bottom=shared)
    other = _perturbed(base, 0, 3)  # a bottom layer differs: the cached states are not its own
    got = _probs(other, tok, items, shared_bottom=shared)
    np.testing.assert_allclose(got, _probs(other, tok, items), rtol=0, atol=1e-6)
    assert shared.full > 0


def test_budget_zero_stores_nothing(four_layers):
    base, tok = four_layers
    items = load_dataset("countries", split="val", limit=20)
    shared = SharedBottom(2, budget_mb=0)
    np.testing.assert_allclose(_probs(base, tok, items, shared_bottom=shared), _probs(base, tok, items), atol=1e-6)
    assert shared.describe()["batches"] == 0 and shared.hits == 0
