"""FIRST as its authors' code computes it, against float64 brute force (issue 12).

Each of the authors' formulas (``distill.py`` of the FIRST repository) is written out here again
in float64 NumPy-style torch, straight from their code, and compared with our losses on the same
tensors. Where their code computes something else than it intends (the other-token branch, the
unnormalized label smoothing), the test pins what it computes.
"""

from __future__ import annotations

import math

import pytest
import torch

from first_train import losses as L

V, K = 40, 5


def _case(seed: int, *, k: int = K, v: int = V, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, n, v, generator=g, dtype=torch.float64) * 2
    teacher = torch.softmax(torch.randn(n, v, generator=g, dtype=torch.float64) * 3, -1)
    probs, ids = teacher.topk(k, dim=-1)  # sorted, most likely first, as the store keeps them
    return logits, ids.unsqueeze(0), probs.unsqueeze(0)


def _student_probs(logits, ids):
    """Their ``student_top_prob``: softmax over the full vocabulary, gathered at the teacher's ids."""
    return torch.softmax(logits[0], -1).gather(-1, ids[0])


# ---- their formulas, float64, one position per row, averaged over positions -------------------
def their_softmax(logits, ids, probs, teacher_temp, student_temp, smoothing=None):
    s = torch.log_softmax(_student_probs(logits, ids) / student_temp, -1)
    t = torch.log_softmax(probs[0] / teacher_temp, -1)
    if smoothing is not None:
        t = t.clone()
        t[:, 0] = t[:, 0] - smoothing
        t[:, 1:] = t[:, 1:] + smoothing / (t.shape[-1] - 1)
    return (t.exp() * (t - s)).sum(-1).mean()  # kl_div(s, t, log_target=True), summed per row


def their_linear(logits, ids, probs, eps):
    def norm(p):
        p = p + eps
        return torch.log(p / p.sum(-1, keepdim=True))

    s, t = norm(_student_probs(logits, ids)), norm(probs[0])
    return (t.exp() * (t - s)).sum(-1).mean()


def their_other_token(logits, ids, probs):
    """Their ``--use_other_token yes`` branch as written: probabilities handed over as log-probabilities."""
    q = _student_probs(logits, ids)
    p = probs[0]
    s = torch.cat([q, 1 - q.sum(-1, keepdim=True)], -1)
    t = torch.cat([p, 1 - p.sum(-1, keepdim=True)], -1)
    return (t.exp() * (t - s)).sum(-1).mean()


def kl_rest_bruteforce(logits, ids, probs):
    """The other-token objective as intended: KL over k + 1 buckets, float64."""
    q = _student_probs(logits, ids)
    p = probs[0]
    p = torch.cat([p, (1 - p.sum(-1, keepdim=True)).clamp_min(0)], -1)
    q = torch.cat([q, 1 - q.sum(-1, keepdim=True)], -1)
    p = p / p.sum(-1, keepdim=True)
    return torch.where(p > 0, p * (p.log() - q.log()), torch.zeros_like(p)).sum(-1).mean()


# ---- the comparisons -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("temps", [(1.0, 1.0), (0.3, 0.3), (0.5, 2.0)])
def test_first_authors_equals_their_softmax_branch(seed, temps):
    logits, ids, probs = _case(seed)
    ours = L.first_authors_loss(logits, ids, probs, teacher_c=temps[0], student_c=temps[1])
    torch.testing.assert_close(ours, their_softmax(logits, ids, probs, *temps), rtol=1e-12, atol=1e-14)
    via_first = L.first_loss(logits, ids, probs, temperature_c=temps[0], student_c=temps[1])
    torch.testing.assert_close(via_first, ours, rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(3))
def test_label_smoothing_is_their_shift_renormalized(seed):
    logits, ids, probs = _case(seed)
    f = 0.1
    t = torch.log_softmax(probs[0] / 0.4, -1)
    shifted = t.clone()
    shifted[:, 0] -= f
    shifted[:, 1:] += f / (K - 1)
    # their target is not a distribution any more
    assert not torch.allclose(shifted.exp().sum(-1), torch.ones(6, dtype=torch.float64), atol=1e-3)
    torch.testing.assert_close(L.smooth_log_target(t, f), shifted - shifted.logsumexp(-1, keepdim=True))
    ours = L.first_authors_loss(logits, ids, probs, teacher_c=0.4, student_c=0.4, label_smoothing=f)
    s = torch.log_softmax(_student_probs(logits, ids) / 0.4, -1)
    target = L.smooth_log_target(t, f)
    torch.testing.assert_close(ours, (target.exp() * (target - s)).sum(-1).mean(), rtol=1e-12, atol=1e-14)
    # their unnormalized version is a different number (what their code trains on)
    assert abs(float(their_softmax(logits, ids, probs, 0.4, 0.4, smoothing=f)) - float(ours)) > 1e-4


@pytest.mark.parametrize("loss", ["first", "topk", "topk-rest"])
def test_label_smoothing_applies_to_every_topk_loss(loss):
    logits, ids, probs = _case(7)
    fn = {"first": lambda **kw: L.first_loss(logits, ids, probs, temperature_c=0.5, **kw),
          "topk": lambda **kw: L.topk_kd_loss(logits, ids, probs, **kw),
          "topk-rest": lambda **kw: L.topk_rest_loss(logits, ids, probs, **kw)}[loss]
    plain, smoothed = fn(), fn(label_smoothing=0.2)
    assert torch.isfinite(smoothed) and float(smoothed) != pytest.approx(float(plain))
    assert float(fn(label_smoothing=0.0)) == float(plain)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_topk_with_eps_equals_their_linear_branch(seed, eps):
    logits, ids, probs = _case(seed)
    torch.testing.assert_close(L.topk_kd_loss(logits, ids, probs, eps=eps), their_linear(logits, ids, probs, eps),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(4))
def test_topk_rest_is_the_intended_other_token_kl(seed):
    logits, ids, probs = _case(seed)
    torch.testing.assert_close(L.topk_rest_loss(logits, ids, probs), kl_rest_bruteforce(logits, ids, probs),
                               rtol=1e-10, atol=1e-12)


def test_their_other_token_branch_rewards_a_one_hot_student():
    """What their code's other-token branch computes: sum_i exp(p_i) (p_i - q_i), linear in q.

    It is 0 at q = p, but it is *lower* at a student that puts all its mass on the teacher's top
    token, and it goes negative: it is not a divergence, and its minimum is a one-hot student —
    the over-confidence FIRST sets out to remove. Our ``topk-rest`` (the KL) is lowest at q = p.
    """
    p = torch.tensor([[0.6, 0.2, 0.1]], dtype=torch.float64)  # the rest bucket holds 0.1
    ids = torch.tensor([[[0, 1, 2]]])
    probs = p.unsqueeze(0)

    def logits_for(q_full):
        return torch.log(torch.tensor(q_full, dtype=torch.float64)).view(1, 1, -1)

    at_teacher = logits_for([0.6, 0.2, 0.1, 0.05, 0.05])  # q = p, rest 0.1 spread on two tokens
    one_hot = logits_for([1 - 4e-9, 1e-9, 1e-9, 1e-9, 1e-9])
    theirs_at_teacher = float(their_other_token(at_teacher, ids, probs))
    theirs_one_hot = float(their_other_token(one_hot, ids, probs))
    assert abs(theirs_at_teacher) < 1e-12
    # by hand: e^.6(.6-1) + e^.2(.2) + e^.1(.1) + e^.1(.1 - 0) = -0.7288 + 0.2443 + 0.1105 + 0.1105
    assert theirs_one_hot == pytest.approx(
        math.exp(0.6) * (0.6 - 1) + math.exp(0.2) * 0.2 + 2 * math.exp(0.1) * 0.1, abs=1e-7)
    assert theirs_one_hot < -0.2 < theirs_at_teacher
    ours_at_teacher = float(L.topk_rest_loss(at_teacher, ids, probs))
    ours_one_hot = float(L.topk_rest_loss(one_hot, ids, probs))
    assert abs(ours_at_teacher) < 1e-12 and ours_one_hot > 1.0


def test_identical_inputs_give_zero():
    logits, ids, probs = _case(3, k=V)  # k = V: the student's gathered probs can equal the teacher's
    same = torch.log(probs[0].gather(-1, ids[0].argsort(-1))).unsqueeze(0)  # logits = log p_T, in vocab order
    for value in (L.first_authors_loss(same, ids, probs, teacher_c=0.3, student_c=0.3),
                  L.first_loss(same, ids, probs, temperature_c=None),
                  L.topk_kd_loss(same, ids, probs, eps=1e-3),
                  L.topk_rest_loss(same, ids, probs)):
        assert abs(float(value)) < 1e-12


def test_equal_temperatures_only_match_differences():
    """softmax(q/c) = softmax(p/c) when q − p is constant over the k: the authors' loss is 0 there."""
    p = torch.tensor([[[0.5, 0.2, 0.1]]], dtype=torch.float64)
    q = p[0, 0] - 0.05  # the student's probabilities: the teacher's minus 0.05 on each of the three
    rest = 1 - float(q.sum())
    logits = torch.log(torch.cat([q, torch.tensor([rest], dtype=torch.float64)])).view(1, 1, -1)
    ids = torch.tensor([[[0, 1, 2]]])
    assert abs(float(L.first_authors_loss(logits, ids, p, teacher_c=0.5, student_c=0.5))) < 1e-12
    assert float(L.first_loss(logits, ids, p, temperature_c=0.5)) > 1e-3  # ours asks for the re-shaped target


def test_k_equal_to_the_vocabulary_gives_the_full_kl():
    logits, ids, probs = _case(5, k=V)
    teacher_logits = torch.full((1, 6, V), -1e300, dtype=torch.float64).scatter(-1, ids, probs.log())
    full = L.full_kd_loss(logits, teacher_logits)
    torch.testing.assert_close(L.topk_kd_loss(logits, ids, probs), full, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(L.topk_rest_loss(logits, ids, probs), full, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(L.topk_kd_loss(logits, ids, probs, eps=1e-12), full, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["first", "first-authors", "topk", "topk-eps", "topk-rest", "smoothed"])
def test_gradients_are_finite_with_zero_probability_tokens(name):
    logits = torch.randn(1, 3, V, dtype=torch.float32)
    logits[0, :, 1] = -1e4  # a teacher token the student gives (numerically) zero probability
    logits.requires_grad_(True)
    ids = torch.tensor([[[0, 1, 2, 3, 4]] * 3])
    probs = torch.tensor([[[0.9, 0.0, 0.05, 0.0, 0.0]] * 3])  # zero-probability teacher tokens
    fn = {"first": lambda: L.first_loss(logits, ids, probs, temperature_c=0.3),
          "first-authors": lambda: L.first_authors_loss(logits, ids, probs, teacher_c=0.3, student_c=0.3),
          "topk": lambda: L.topk_kd_loss(logits, ids, probs),
          "topk-eps": lambda: L.topk_kd_loss(logits, ids, probs, eps=1e-6),
          "topk-rest": lambda: L.topk_rest_loss(logits, ids, probs),
          "smoothed": lambda: L.topk_kd_loss(logits, ids, probs, label_smoothing=0.1)}[name]
    loss = fn()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_bad_options_are_value_errors():
    logits, ids, probs = _case(0)
    with pytest.raises(ValueError, match="student_c"):
        L.first_authors_loss(logits, ids, probs, student_c=0.0)
    with pytest.raises(ValueError, match="temperature_c with student_c"):
        L.first_loss(logits, ids, probs, student_c=0.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        L.topk_kd_loss(logits, ids, probs, label_smoothing=-0.1)
    with pytest.raises(ValueError, match="eps"):
        L.topk_kd_loss(logits, ids, probs, eps=float("nan"))
