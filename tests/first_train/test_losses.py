"""Distillation losses against dense float64 brute force (plain loops and formulas)."""

from __future__ import annotations

import math

import pytest
import torch

from first_train.losses import (
    ce_loss,
    first_loss,
    full_kd_loss,
    mix_ce,
    rs_kd_loss,
    sample_rs_tokens,
    topk_kd_loss,
    topk_rest_loss,
)

B, T, V, K = 2, 3, 11, 4


# --------------------------------------------------------------------------- brute force (float64)
def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [v / s for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def _row(logits: torch.Tensor, b: int, t: int) -> list[float]:
    return [float(x) for x in logits[b, t].double()]


def _mean_over(mask: torch.Tensor, f) -> float:
    vals = [f(b, t) for b in range(mask.shape[0]) for t in range(mask.shape[1]) if mask[b, t]]
    return sum(vals) / len(vals) if vals else 0.0


def brute_topk(logits, ids, probs, mask, c=None) -> float:
    def one(b, t):
        p = [float(x) for x in probs[b, t].double()]
        if c is None:
            target = [x / sum(p) for x in p]
        else:
            target = _softmax([x / c for x in p])
        full = _softmax(_row(logits, b, t))
        gathered = [full[int(i)] for i in ids[b, t]]
        student = [x / sum(gathered) for x in gathered]
        return _kl(target, student)

    return _mean_over(mask, one)


def brute_rest(logits, ids, probs, mask) -> float:
    def one(b, t):
        p = [float(x) for x in probs[b, t].double()]
        target = p + [max(1.0 - sum(p), 0.0)]
        full = _softmax(_row(logits, b, t))
        chosen = [int(i) for i in ids[b, t]]
        rest = sum(full[v] for v in range(len(full)) if v not in chosen)
        student = [full[i] for i in chosen] + [rest]
        return _kl(target, student)

    return _mean_over(mask, one)


def brute_full(s_logits, t_logits, mask, temperature=1.0) -> float:
    def one(b, t):
        p = _softmax([x / temperature for x in _row(t_logits, b, t)])
        q = _softmax([x / temperature for x in _row(s_logits, b, t)])
        return _kl(p, q)

    return _mean_over(mask, one)


def brute_rs(logits, ids, weights, mask) -> float:
    def one(b, t):
        full = _softmax(_row(logits, b, t))
        return -sum(float(w) * math.log(full[int(i)]) for i, w in zip(ids[b, t], weights[b, t]))

    return _mean_over(mask, one)


def brute_ce(logits, labels) -> float:
    vals = []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[b, t] != -100:
                vals.append(-math.log(_softmax(_row(logits, b, t))[int(labels[b, t])]))
    return sum(vals) / len(vals) if vals else 0.0


# --------------------------------------------------------------------------- fixtures
def _teacher_topk(teacher_logits: torch.Tensor, k: int):
    probs = torch.softmax(teacher_logits.double(), dim=-1).float()
    top = probs.topk(k, dim=-1)
    return top.indices, top.values


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(B, T, V, generator=g) * 2
    teacher = torch.randn(B, T, V, generator=g) * 3
    ids, probs = _teacher_topk(teacher, K)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    return student, teacher, ids, probs, mask


def _topk_losses():
    return {
        "first": lambda s, i, p, m: first_loss(s, i, p, m, temperature_c=0.3),
        "topk": topk_kd_loss,
        "rest": topk_rest_loss,
    }


# --------------------------------------------------------------------------- identical inputs -> 0
@pytest.mark.parametrize("name", ["first", "topk", "rest", "full"])
def test_identical_inputs_give_zero(name):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(B, T, V, generator=g) * 3
    ids, probs = _teacher_topk(logits, K)
    if name == "full":
        loss = full_kd_loss(logits, logits.clone())
    elif name == "first":
        # FIRST's target is softmax(p / c): matched when the student's logits at the ids are p / c
        c = 0.25
        student = torch.full((B, T, V), -30.0).scatter(-1, ids, probs / c)
        loss = first_loss(student, ids, probs, temperature_c=c)
    else:
        loss = _topk_losses()[name](logits, ids, probs, None)
    assert abs(float(loss)) < 1e-6


# --------------------------------------------------------------------------- against brute force
@pytest.mark.parametrize("c", [None, 0.1, 0.5, 1.0, 3.0])
def test_first_loss_matches_brute_force(data, c):
    student, _, ids, probs, mask = data
    got = first_loss(student.double(), ids, probs.double(), mask, temperature_c=c)
    expected = brute_topk(student, ids, probs, mask, c)
    assert float(got) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_topk_kd_loss_matches_brute_force_and_first_without_c(data):
    student, _, ids, probs, mask = data
    got = topk_kd_loss(student, ids, probs, mask)
    assert float(got) == pytest.approx(brute_topk(student, ids, probs, mask), rel=1e-5)
    assert torch.equal(got, first_loss(student, ids, probs, mask))


def test_topk_rest_loss_matches_brute_force(data):
    student, _, ids, probs, mask = data
    got = topk_rest_loss(student.double(), ids, probs.double(), mask)
    assert float(got) == pytest.approx(brute_rest(student, ids, probs, mask), rel=1e-9)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_full_kd_loss_matches_brute_force(data, temperature):
    student, teacher, _, _, mask = data
    got = full_kd_loss(student.double(), teacher.double(), mask, temperature=temperature)
    assert float(got) == pytest.approx(brute_full(student, teacher, mask, temperature), rel=1e-9)


def test_rs_kd_loss_matches_brute_force(data):
    student, teacher, _, _, mask = data
    ids, w = sample_rs_tokens(teacher, 6, generator=torch.Generator().manual_seed(3))
    got = rs_kd_loss(student.double(), ids, w.double(), mask)
    assert float(got) == pytest.approx(brute_rs(student, ids, w, mask), rel=1e-9)


def test_ce_loss_matches_brute_force(data):
    student = data[0]
    labels = torch.tensor([[3, -100, 0], [10, 7, -100]])
    assert float(ce_loss(student.double(), labels)) == pytest.approx(
        brute_ce(student, labels), rel=1e-9
    )


def test_float32_agrees_with_float64(data):
    student, teacher, ids, probs, mask = data
    for f in (
        lambda s: first_loss(s, ids, probs, mask, temperature_c=0.2),
        lambda s: topk_rest_loss(s, ids, probs, mask),
        lambda s: full_kd_loss(s, teacher, mask),
    ):
        assert float(f(student)) == pytest.approx(float(f(student.double())), rel=1e-5, abs=1e-7)


# --------------------------------------------------------------------------- k = V -> full KL
def test_k_equals_vocab_gives_full_kl(data):
    student, teacher, _, _, mask = data
    ids, probs = _teacher_topk(teacher.double(), V)
    full = full_kd_loss(student.double(), teacher.double(), mask)
    s = student.double()
    assert float(topk_kd_loss(s, ids, probs.double(), mask)) == pytest.approx(float(full), rel=1e-6)
    assert float(first_loss(s, ids, probs.double(), mask)) == pytest.approx(float(full), rel=1e-6)
    # no rest mass left: the k+1 bucket is empty and the loss is the full KL too
    assert float(topk_rest_loss(s, ids, probs.double(), mask)) == pytest.approx(
        float(full), rel=1e-6
    )


def test_k_equals_vocab_first_loss_is_full_kl_to_reshaped_teacher(data):
    student, teacher, _, _, mask = data
    ids, probs = _teacher_topk(teacher.double(), V)
    c = 0.2
    reshaped = torch.softmax(probs.double() / c, dim=-1)
    # a dense teacher whose softmax is the re-shaped distribution, placed at the right ids
    dense_teacher = torch.zeros(B, T, V, dtype=torch.float64).scatter(-1, ids, reshaped.log())
    full = full_kd_loss(student.double(), dense_teacher, mask)
    got = first_loss(student.double(), ids, probs.double(), mask, temperature_c=c)
    assert float(got) == pytest.approx(float(full), rel=1e-9)


# --------------------------------------------------------------------------- masking
ALL_LOSSES = {
    "first": lambda s, d, m: first_loss(s, d[2], d[3], m, temperature_c=0.5),
    "topk": lambda s, d, m: topk_kd_loss(s, d[2], d[3], m),
    "rest": lambda s, d, m: topk_rest_loss(s, d[2], d[3], m),
    "full": lambda s, d, m: full_kd_loss(s, d[1], m),
    "rs": lambda s, d, m: rs_kd_loss(s, d[2], d[3], m),
    "ce": lambda s, d, m: ce_loss(s, torch.where(m, d[2][..., 0], -100)),
}


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_masked_positions_do_not_contribute(data, name):
    student, _, _, _, mask = data
    f = ALL_LOSSES[name]
    base = f(student, data, mask)
    garbage = student.clone()
    garbage[~mask] = float("nan")  # anything may sit at ignored positions, in every input
    student_, teacher, ids, probs, _ = data
    teacher, ids, probs = teacher.clone(), ids.clone(), probs.clone()
    teacher[~mask], ids[~mask], probs[~mask] = float("nan"), -100, float("nan")
    poisoned_data = (student_, teacher, ids, probs, mask)
    poisoned = f(garbage, poisoned_data, mask)
    assert torch.equal(base, poisoned)
    garbage.requires_grad_(True)
    f(garbage, poisoned_data, mask).backward()
    assert torch.isfinite(garbage.grad).all()
    assert (garbage.grad[~mask] == 0).all()


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_all_false_mask_gives_zero_and_finite_gradient(data, name):
    student = data[0].clone().requires_grad_(True)
    empty = torch.zeros(B, T, dtype=torch.bool)
    loss = ALL_LOSSES[name](student, data, empty)
    assert float(loss.detach()) == 0.0 and not torch.isnan(loss.detach())
    loss.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


@pytest.mark.parametrize("name", ["first", "topk", "rest", "full", "rs"])
def test_reduction_none_and_sum(data, name):
    student, teacher, ids, probs, mask = data
    f = {
        "first": lambda r: first_loss(student, ids, probs, mask, temperature_c=0.5, reduction=r),
        "topk": lambda r: topk_kd_loss(student, ids, probs, mask, reduction=r),
        "rest": lambda r: topk_rest_loss(student, ids, probs, mask, reduction=r),
        "full": lambda r: full_kd_loss(student, teacher, mask, reduction=r),
        "rs": lambda r: rs_kd_loss(student, ids, probs, mask, reduction=r),
    }[name]
    per = f("none")
    assert per.shape == (B, T) and (per[~mask] == 0).all() and (per[mask] >= -1e-7).all()
    assert float(f("sum")) == pytest.approx(float(per.sum()), rel=1e-6)
    assert float(f("mean")) == pytest.approx(float(per.sum()) / int(mask.sum()), rel=1e-6)


# --------------------------------------------------------------------------- extreme logits
@pytest.mark.parametrize("scale", [1e2, 1e4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_gradients_finite_for_extreme_logits(data, name, scale, dtype):
    g = torch.Generator().manual_seed(5)
    student = (torch.randn(B, T, V, generator=g) * scale).to(dtype).requires_grad_(True)
    teacher = torch.randn(B, T, V, generator=g) * scale
    ids, probs = _teacher_topk(teacher, K)
    d = (student, teacher, ids, probs, data[4])
    loss = ALL_LOSSES[name](student, d, d[4])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_rest_bucket_is_exact_when_the_rest_is_tiny():
    # Student puts ~1 - 1e-30 on the k ids: log(rest) ~ -69 must survive in float32, where
    # log1p(-exp(logsumexp(top) - logsumexp(all))) would give -inf (or log of a negative number).
    v, k = 50, 3
    logits = torch.full((1, 1, v), -40.0)
    logits[0, 0, :k] = torch.tensor([30.0, 29.0, 28.0])
    ids = torch.arange(k).view(1, 1, k)
    probs = torch.tensor([[[0.6, 0.3, 0.05]]])  # teacher rest = 0.05
    got = topk_rest_loss(logits.requires_grad_(True), ids, probs)
    ref = brute_rest(logits.detach(), ids, probs, torch.ones(1, 1, dtype=torch.bool))
    value = float(got.detach())
    assert math.isfinite(value) and value > 1.0
    assert value == pytest.approx(ref, rel=1e-5)
    got.backward()
    assert torch.isfinite(logits.grad).all()
    # compare with the naive formula to show it is the one that breaks
    lse = torch.logsumexp(logits.detach(), -1)
    naive = torch.log1p(-torch.exp(torch.logsumexp(logits.detach()[..., :k], -1) - lse))
    assert not torch.isfinite(naive).all()


def test_teacher_probs_summing_past_one_are_renormalized_in_rest_loss():
    logits = torch.zeros(1, 1, 4)
    ids = torch.tensor([[[0, 1]]])
    a = topk_rest_loss(logits, ids, torch.tensor([[[0.6, 0.5]]]))
    b = topk_rest_loss(logits, ids, torch.tensor([[[0.6 / 1.1, 0.5 / 1.1]]]))
    assert float(a) == pytest.approx(float(b), rel=1e-6)


# --------------------------------------------------------------------------- RS-KD
def test_sample_rs_tokens_is_deterministic_and_well_formed():
    teacher = torch.randn(3, 5, 40, generator=torch.Generator().manual_seed(0))
    a = sample_rs_tokens(teacher, 12, generator=torch.Generator().manual_seed(7))
    b = sample_rs_tokens(teacher, 12, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    ids, w = a
    assert ids.shape == w.shape == (3, 5, 12) and ids.dtype == torch.int64
    assert torch.allclose(w.sum(-1), torch.ones(3, 5))
    assert torch.equal(w * 12, (w * 12).round())  # multiples of 1/m
    assert (ids[..., 1:] >= ids[..., :-1]).all()  # sorted
    dup = ids[..., 1:] == ids[..., :-1]
    assert (w[..., 1:][dup] == 0).all() and (w[..., 1:][~dup] > 0).all()
    probs_input = sample_rs_tokens(
        torch.softmax(teacher, -1), 12, generator=torch.Generator().manual_seed(7),
        from_logits=False,
    )
    assert torch.equal(probs_input[0], ids)


def test_rs_kd_is_unbiased_for_the_full_cross_entropy_value_and_gradient():
    # Many independent m-sample estimates for one (teacher, student) pair: their mean matches the
    # dense cross-entropy -sum p_T log p_S and its gradient p_S - p_T within 5 standard errors.
    v, m, n = 30, 4, 40_000
    g = torch.Generator().manual_seed(11)
    teacher = torch.randn(v, generator=g, dtype=torch.float64) * 2
    student = torch.randn(v, generator=g, dtype=torch.float64)
    p_t, p_s = torch.softmax(teacher, -1), torch.softmax(student, -1)
    ids, w = sample_rs_tokens(teacher.expand(1, n, v), m, generator=g)
    logits = student.expand(1, n, v).clone().requires_grad_(True)
    per = rs_kd_loss(logits, ids, w.double(), reduction="none")[0]  # (n,)
    per.sum().backward()
    per = per.detach()
    grads = logits.grad[0]  # (n, v): one gradient estimate per draw

    dense_ce = float(-(p_t * p_s.log()).sum())
    se = float(per.std()) / math.sqrt(n)
    assert abs(float(per.mean()) - dense_ce) < 5 * se

    dense_grad = p_s - p_t  # d KL(p_T || p_S) / d logits == d CE / d logits
    se_g = grads.std(0) / math.sqrt(n)
    assert ((grads.mean(0) - dense_grad).abs() <= 5 * se_g + 1e-12).all()

    # the KL differs from the estimated CE by the constant H(p_T)
    kl = float(full_kd_loss(student.view(1, 1, v), teacher.view(1, 1, v)))
    entropy = float(-(p_t * p_t.log()).sum())
    assert dense_ce == pytest.approx(kl + entropy, rel=1e-9)


def test_topk_kd_gradient_is_biased_where_rs_kd_is_not():
    # The motivation for RS-KD: with mass outside the top-k, top-k KD's gradient differs from the
    # dense one by far more than RS-KD's sampling noise.
    v, k = 30, 3
    g = torch.Generator().manual_seed(2)
    teacher = torch.randn(1, 1, v, generator=g, dtype=torch.float64)
    student = torch.randn(1, 1, v, generator=g, dtype=torch.float64).requires_grad_(True)
    ids, probs = _teacher_topk(teacher, k)
    topk_kd_loss(student, ids, probs.double()).backward()
    dense = torch.softmax(student.detach(), -1) - torch.softmax(teacher, -1)
    assert float((student.grad - dense).abs().max()) > 0.05


# --------------------------------------------------------------------------- validation & mixing
def test_mix_ce():
    kd, ce = torch.tensor(2.0), torch.tensor(4.0)
    assert float(mix_ce(kd, ce, 0.0)) == 2.0
    assert float(mix_ce(kd, ce, 1.0)) == 4.0
    assert float(mix_ce(kd, ce, 0.5)) == 3.0
    with pytest.raises(ValueError, match="alpha"):
        mix_ce(kd, ce, 1.5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s, i, p, m: first_loss(s[0], i, p, m), "student_logits of shape"),
        (lambda s, i, p, m: first_loss(s, i[..., :2], p, m), "values of shape"),
        (lambda s, i, p, m: first_loss(s, i.float(), p, m), "integer teacher_ids"),
        (lambda s, i, p, m: first_loss(s, i + V, p, m), "tokenizer"),
        (lambda s, i, p, m: first_loss(s, i, -p, m), "non-negative"),
        (lambda s, i, p, m: first_loss(s, i, p, m.long()), "bool mask"),
        (lambda s, i, p, m: first_loss(s, i, p, m[:, :1]), "mask of shape"),
        (lambda s, i, p, m: first_loss(s, i, p, m, temperature_c=0.0), "c > 0"),
        (lambda s, i, p, m: first_loss(s, i, p, m, reduction="avg"), "reduction"),
        (lambda s, i, p, m: full_kd_loss(s, s[..., :5], m), "share a vocabulary"),
        (lambda s, i, p, m: full_kd_loss(s, s, m, temperature=0), "temperature"),
        (lambda s, i, p, m: ce_loss(s, i[..., 0] + V), "labels in"),
        (lambda s, i, p, m: sample_rs_tokens(s, 0), "m <= 255"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(data, call, match):
    student, _, ids, probs, mask = data
    with pytest.raises(ValueError, match=match):
        call(student, ids, probs, mask)
