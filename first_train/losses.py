"""Distillation losses as pure torch functions (DESIGN.md "The method, precisely", step 4).

Every loss takes the student's logits at the positions to be trained, ``(B, T, V)``, and what the
teacher says about the same positions; positions are *aligned*: ``teacher_ids[b, t]`` describes the
distribution that ``student_logits[b, t]`` must match (the caller does any causal shift). Ignored
positions are dropped before any maths (boolean indexing), so padding may hold anything, and the
default ``reduction="mean"`` divides by ``max(n_valid, 1)``: an all-false mask gives exactly 0
with a zero (finite) gradient. All maths is in log space (``log_softmax``, ``logsumexp``,
``xlogy``) in at least float32, whatever the input dtype.

=====================  ======================================================================
loss                   what the student matches
=====================  ======================================================================
``first_loss``         FIRST: KL(p'_T || p_S) over the k stored tokens, p'_T = softmax(p_T / c);
                       with ``student_c`` the authors' code: both sides re-shaped
``first_authors_loss`` KL(softmax(p_T / c_T) || softmax(q_S / c_S)), q_S the student's
                       full-vocabulary probabilities at the teacher's ids (the authors' code)
``topk_kd_loss``       the same without re-shaping (p_T renormalized over the k); with ``eps``
                       the authors' ``linear`` normalization, (p + eps) renormalized
``topk_rest_loss``     k + 1 buckets: the k tokens and "the rest of the mass", for both models
``rs_kd_loss``         importance-sampled tokens (RS-KD): unbiased for the full cross-entropy
``full_kd_loss``       dense KL(p_T || p_S) over the full vocabulary (online teacher baseline)
``ce_loss``            cross-entropy on one-hot labels (ordinary fine-tuning)
=====================  ======================================================================

``mix_ce(kd, ce, alpha)`` combines a distillation loss with CE as ``alpha * ce + (1 - alpha) * kd``.

Every top-k loss takes ``label_smoothing=f``, the authors' ``--use_label_smoothing yes
--smoothing_factor f``: the log-target of the most likely token is lowered by ``f`` and that of
each other bucket raised by ``f / (n - 1)`` (``n`` buckets), then — unlike their code, which
leaves the result unnormalized — the target is renormalized (:func:`smooth_log_target`).
``docs/first-method.md`` maps each of the authors' flags to these options.

References
----------
.. [1] K. Shum, M. Xu, J. Zhang, Z. Chen, S. Diao, H. Dong, J. Zhang and M. O. Raza, "FIRST: Teach
   A Reliable Large Language Model Through Efficient Trustworthy Distillation", EMNLP 2024,
   arXiv:2408.12168.
.. [2] A. Anshumann et al., "Sparse Logit Sampling: Accelerating Knowledge Distillation in LLMs",
   ACL 2025.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from first_train.reshape import reshape_topk

__all__ = [
    "ce_loss",
    "first_authors_loss",
    "first_loss",
    "full_kd_loss",
    "mix_ce",
    "rs_kd_loss",
    "sample_rs_tokens",
    "smooth_log_target",
    "topk_kd_loss",
    "topk_rest_loss",
]

Reduction = Literal["mean", "sum", "none"]
IGNORE_INDEX = -100


# --------------------------------------------------------------------------- validation (one door)
def _check_logits(student_logits: torch.Tensor) -> None:
    if not isinstance(student_logits, torch.Tensor) or student_logits.dim() != 3:
        raise ValueError(
            f"Expected student_logits of shape (B, T, V), got {_shape(student_logits)}"
        )
    if not student_logits.is_floating_point():
        raise ValueError(f"Expected floating-point student_logits, got {student_logits.dtype}")


def _check_mask(mask: torch.Tensor | None, student_logits: torch.Tensor) -> torch.Tensor:
    bt = student_logits.shape[:2]
    if mask is None:
        return torch.ones(bt, dtype=torch.bool, device=student_logits.device)
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(bt):
        raise ValueError(f"Expected mask of shape {tuple(bt)}, got {_shape(mask)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"Expected a bool mask, got {mask.dtype}")
    return mask


def _sparse_target(
    name: str,
    ids: torch.Tensor,
    values: torch.Tensor,
    student_logits: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ids/values ``(B, T, k)``; return their valid rows ``(N, k)`` (ids as int64).

    Only valid positions are checked: padding may hold any id (e.g. -100) or value.
    """
    b, t, v = student_logits.shape
    if not isinstance(ids, torch.Tensor) or ids.dim() != 3 or tuple(ids.shape[:2]) != (b, t):
        raise ValueError(f"Expected {name}_ids of shape ({b}, {t}, k), got {_shape(ids)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"Expected integer {name}_ids, got {ids.dtype}")
    if not isinstance(values, torch.Tensor) or values.shape != ids.shape:
        raise ValueError(
            f"Expected {name} values of shape {tuple(ids.shape)}, got {_shape(values)}"
        )
    if not values.is_floating_point():
        raise ValueError(f"Expected floating-point {name} values, got {values.dtype}")
    if ids.shape[-1] < 1 or ids.shape[-1] > v:
        raise ValueError(f"Expected 1 <= k <= V={v} {name} tokens, got k={ids.shape[-1]}")
    ids, values = ids[mask].long(), values[mask]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= v):
        raise ValueError(
            f"Expected {name}_ids in [0, {v}), got range [{int(ids.min())}, {int(ids.max())}]"
            " (does the student share the teacher's tokenizer?)"
        )
    if values.numel() and not bool(((values >= 0) & torch.isfinite(values)).all()):
        raise ValueError(f"Expected finite, non-negative {name} values")
    return ids, values


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"Expected reduction in ('mean', 'sum', 'none'), got {reduction!r}")


def _shape(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


# --------------------------------------------------------------------------- shared reduction
def _reduce(per_pos: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-valid-position losses ``(N,)`` (``N = mask.sum()``)."""
    if reduction == "sum":
        return per_pos.sum()
    if reduction == "mean":
        return per_pos.sum() / max(per_pos.numel(), 1)
    out = per_pos.new_zeros(mask.shape)
    return out.masked_scatter(mask, per_pos)


def _float(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16/fp16 logits are upcast before any exp/log)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _sparse_kl(
    student_logits: torch.Tensor,
    ids: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    reduction: str,
) -> torch.Tensor:
    """KL(target || student renormalized over the ids); ``ids``, ``target`` valid rows (N, k).

    Gathers the k logits before selecting rows, so no (N, V) copy is made: the cost is O(B T k).
    """
    full_ids = torch.zeros(mask.shape + ids.shape[-1:], dtype=torch.long, device=ids.device)
    full_ids[mask] = ids  # masked positions gather token 0, then are dropped
    gathered = _float(student_logits.gather(-1, full_ids)[mask])  # (N, k)
    log_q = torch.log_softmax(gathered, dim=-1)  # the full-vocabulary normalizer cancels
    target = target.to(log_q.dtype)
    per_pos = (torch.special.xlogy(target, target) - target * log_q).sum(-1)
    return _reduce(per_pos, mask, reduction)


def _normalized(p: torch.Tensor) -> torch.Tensor:
    p = _float(p)
    return p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)


def _check_smoothing(label_smoothing: float) -> float:
    if isinstance(label_smoothing, bool) or not (0.0 <= float(label_smoothing) < float("inf")):
        raise ValueError(f"Expected label_smoothing >= 0 (finite), got {label_smoothing!r}")
    return float(label_smoothing)


def _check_temperature(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"Expected {name} > 0 (finite), got {value!r}")
    return float(value)


def smooth_log_target(log_target: torch.Tensor, factor: float) -> torch.Tensor:
    r"""The authors' label smoothing of a top-k target, renormalized: log-probabilities ``(N, n)``.

    Their code (``--use_label_smoothing yes --smoothing_factor f``) works on the target's
    log-probabilities ``t``: ``t[0] -= f`` for the most likely token (the first of the sorted top-k)
    and ``t[i] += f / (n - 1)`` for the other ``n - 1`` buckets, then hands ``t`` to
    ``kl_div(log_target=True)`` as it is — no longer a distribution. Here the same shift is applied
    to the most likely bucket (``argmax``; the first one for a sorted store) and the result is
    renormalized:

    .. math::
        \log p'_i = t_i + \delta_i - \operatorname{logsumexp}_j (t_j + \delta_j), \qquad
        \delta_{top} = -f, \quad \delta_{i \ne top} = f / (n - 1).

    ``f = 0`` or ``n = 1`` returns ``log_target`` unchanged.

    Examples
    --------
    >>> t = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    >>> [round(x, 4) for x in smooth_log_target(t, 0.1).exp()[0].tolist()]
    [0.6676, 0.2216, 0.1108]
    """
    n = log_target.shape[-1]
    if factor == 0 or n == 1:
        return log_target
    top = log_target.argmax(-1, keepdim=True)
    shift = torch.full_like(log_target, factor / (n - 1)).scatter(-1, top, -factor)
    shifted = log_target + shift
    return shifted - torch.logsumexp(shifted, dim=-1, keepdim=True)


def _kl_from_log(log_target: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Per-row KL(p || q) from log-probabilities; a zero target probability contributes 0."""
    p = log_target.exp()
    return torch.where(p > 0, p * (log_target - log_q), torch.zeros_like(p)).sum(-1)


def _student_topk_probs(student_logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The student's full-vocabulary probabilities at the valid rows' ids, ``(N, k)``, in >= float32."""
    logits = _float(student_logits[mask])  # (N, V)
    return torch.exp(logits.gather(-1, ids) - torch.logsumexp(logits, dim=-1, keepdim=True))


# --------------------------------------------------------------------------- public losses
def first_loss(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature_c: float | None = None,
    student_c: float | None = None,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""FIRST loss: forward KL(p'_T || p_S) over the teacher's k stored tokens.

    .. math::
        p'_T(i) = \frac{\exp(p_i / c)}{\sum_{j \le k} \exp(p_j / c)}, \qquad
        p_S(i) = \frac{\exp z_{id_i}}{\sum_{j \le k} \exp z_{id_j}}, \qquad
        \mathcal{L} = \sum_{i \le k} p'_T(i)\,[\log p'_T(i) - \log p_S(i)].

    The re-shaping acts on the *probabilities* (DESIGN.md step 3), not on log-probabilities. The
    student's full-vocabulary softmax gathered at the teacher's ids and renormalized over the k is
    ``log_softmax`` of the gathered logits (the full-vocabulary normalizer cancels).

    Parameters
    ----------
    student_logits : Tensor of shape (B, T, V)
        Student logits at the trained positions (any float dtype; maths in >= float32).
    teacher_ids : integer Tensor of shape (B, T, k)
        The teacher's stored top-k token ids (``0 <= id < V``).
    teacher_probs : Tensor of shape (B, T, k)
        The teacher's probabilities of those tokens (need not sum to 1).
    mask : bool Tensor of shape (B, T), default=None
        Positions to train; ``None`` means all.
    temperature_c : float, default=None
        Re-shaping temperature ``c > 0``; ``None`` renormalizes ``p_T`` over the k instead (then
        this is :func:`topk_kd_loss`).
    student_c : float, default=None
        ``None``: the student side is its gathered distribution renormalized (the objective
        above). Set: the authors' code, both sides re-shaped — :func:`first_authors_loss` with
        ``teacher_c = temperature_c`` (which must then be set).
    label_smoothing : float, default=0.0
        The authors' label smoothing of the target (:func:`smooth_log_target`).
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"`` over valid positions (0 if there are none), ``"sum"``, or ``"none"`` for a
        ``(B, T)`` tensor with zeros at masked positions.

    Returns
    -------
    Tensor
        Scalar (or ``(B, T)``), in nats, >= 0.

    References
    ----------
    .. [1] K. Shum et al., "FIRST: Teach A Reliable Large Language Model Through Efficient
       Trustworthy Distillation", EMNLP 2024, arXiv:2408.12168.

    Examples
    --------
    >>> logits = torch.tensor([[[2.0, 1.0, 0.0]]])
    >>> ids, probs = torch.tensor([[[0, 1]]]), torch.tensor([[[0.7, 0.2]]])
    >>> round(float(first_loss(logits, ids, probs, temperature_c=1.0)), 4)
    0.028
    """
    if student_c is not None:
        if temperature_c is None:
            raise ValueError("Expected temperature_c with student_c (both sides are re-shaped)")
        return first_authors_loss(student_logits, teacher_ids, teacher_probs, mask, teacher_c=temperature_c,
                                  student_c=student_c, label_smoothing=label_smoothing, reduction=reduction)
    _check_logits(student_logits)
    mask = _check_mask(mask, student_logits)
    ids, probs = _sparse_target("teacher", teacher_ids, teacher_probs, student_logits, mask)
    _check_reduction(reduction)
    factor = _check_smoothing(label_smoothing)
    if temperature_c is None:
        target = _normalized(probs)
    else:
        target = reshape_topk(_float(probs), temperature_c)
    if factor:
        target = smooth_log_target(torch.log(target), factor).exp()
    return _sparse_kl(student_logits, ids, target, mask, reduction)


def first_authors_loss(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    teacher_c: float = 1.0,
    student_c: float = 1.0,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""FIRST as the authors' code computes it: both sides re-shaped with ``softmax(p / c)``.

    .. math::
        q_i = \frac{\exp z_{id_i}}{\sum_{v \le V} \exp z_v}, \quad
        t = \log\operatorname{softmax}(p_T / c_T), \quad
        s = \log\operatorname{softmax}(q / c_S), \quad
        \mathcal{L} = \sum_{i \le k} e^{t_i} (t_i - s_i),

    the ``--use_norm softmax`` branch of the authors' ``distill.py``:
    ``kl_div(log_softmax(q / student_temp), log_softmax(p_T / teacher_temp), log_target=True)``.
    ``q`` is the student's *full-vocabulary* probability of each teacher token (not renormalized
    over the k). Since ``softmax(x / c)`` is unchanged when a constant is added to every ``x``,
    with ``c_T = c_S`` the loss is 0 whenever ``q − p_T`` is constant over the k tokens: the
    student is asked to reproduce the teacher's probability *differences*, not the re-shaped
    distribution. Their code sums over response tokens and divides by the batch size; this
    averages over the valid positions (the same when each sequence has one response position).

    Parameters
    ----------
    student_logits, teacher_ids, teacher_probs, mask
        As :func:`first_loss`.
    teacher_c, student_c : float, default=1.0
        The two temperatures (``--teacher_temp``, ``--student_temp``), each ``> 0``.
    label_smoothing : float, default=0.0
        The authors' label smoothing of the target (:func:`smooth_log_target`).
    reduction : {"mean", "sum", "none"}, default="mean"

    Examples
    --------
    >>> logits = torch.tensor([[[2.0, 1.0, 0.0]]])
    >>> ids, probs = torch.tensor([[[0, 1]]]), torch.tensor([[[0.7, 0.2]]])
    >>> round(float(first_authors_loss(logits, ids, probs, teacher_c=0.5, student_c=0.5)), 4)
    0.0025
    """
    _check_logits(student_logits)
    mask = _check_mask(mask, student_logits)
    ids, p = _sparse_target("teacher", teacher_ids, teacher_probs, student_logits, mask)
    _check_reduction(reduction)
    teacher_c = _check_temperature("teacher_c", teacher_c)
    student_c = _check_temperature("student_c", student_c)
    factor = _check_smoothing(label_smoothing)
    q = _student_topk_probs(student_logits, ids, mask)
    log_t = torch.log_softmax(p.to(q.dtype) / teacher_c, dim=-1)
    log_s = torch.log_softmax(q / student_c, dim=-1)
    if factor:
        log_t = smooth_log_target(log_t, factor)
    return _reduce(_kl_from_log(log_t, log_s), mask, reduction)


def topk_kd_loss(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    eps: float = 0.0,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Top-k KD without re-shaping: KL(p_T || p_S), both renormalized over the k stored tokens.

    Same shapes and conventions as :func:`first_loss` with ``temperature_c=None``. With ``eps > 0``
    this is the authors' ``--use_norm linear --norm_epsilon eps``: both sides are
    ``(x + eps) / sum(x + eps)`` over the k, the student's ``x`` being its full-vocabulary
    probabilities of the teacher's tokens:

    .. math::
        \tilde p_i = \frac{p_i + \epsilon}{\sum_j (p_j + \epsilon)}, \quad
        \tilde q_i = \frac{q_i + \epsilon}{\sum_j (q_j + \epsilon)}, \quad
        \mathcal{L} = \sum_i \tilde p_i \log(\tilde p_i / \tilde q_i).

    ``eps = 0`` is the plain renormalization (``log_softmax`` of the gathered logits).

    Examples
    --------
    >>> logits = torch.tensor([[[2.0, 1.0, 0.0]]])
    >>> ids, probs = torch.tensor([[[0, 1]]]), torch.tensor([[[0.7, 0.2]]])
    >>> round(float(topk_kd_loss(logits, ids, probs)), 4)
    0.0058
    """
    if isinstance(eps, bool) or not (0.0 <= float(eps) < float("inf")):
        raise ValueError(f"Expected eps >= 0 (finite), got {eps!r}")
    if not eps:
        return first_loss(student_logits, teacher_ids, teacher_probs, mask, temperature_c=None,
                          label_smoothing=label_smoothing, reduction=reduction)
    _check_logits(student_logits)
    mask = _check_mask(mask, student_logits)
    ids, p = _sparse_target("teacher", teacher_ids, teacher_probs, student_logits, mask)
    _check_reduction(reduction)
    factor = _check_smoothing(label_smoothing)
    q = _student_topk_probs(student_logits, ids, mask)
    p = p.to(q.dtype) + eps
    log_t = torch.log(p / p.sum(-1, keepdim=True))
    log_s = torch.log(q + eps) - torch.log((q + eps).sum(-1, keepdim=True))
    if factor:
        log_t = smooth_log_target(log_t, factor)
    return _reduce(_kl_from_log(log_t, log_s), mask, reduction)


def topk_rest_loss(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_probs: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Top-k KD with a k+1-th "rest of the mass" bucket, KL over k + 1 buckets.

    Teacher buckets: ``p_1..p_k`` and ``max(1 - sum p_i, 0)`` (renormalized only if the stored k
    sum past 1). Student buckets: its *full-vocabulary* probabilities of the k ids and of
    everything else, the latter computed exactly in log space:

    .. math::
        \log p_S(\text{rest}) = \operatorname{logsumexp}_{v \notin ids} z_v
                               - \operatorname{logsumexp}_v z_v,

    with the k ids masked to the dtype's most negative finite value. This keeps full precision when
    the rest is tiny, where ``log1p(-sum exp(log p_i))`` rounds to ``-inf``. With ``k = V`` there is
    no rest bucket (the loss is the full KL).

    This is the authors' ``--use_other_token yes`` computed as they intend. Their code passes the
    k + 1 *probabilities* of both sides to ``kl_div(..., log_target=True)`` as though they were
    log-probabilities, which computes ``sum_i exp(p_i) (p_i - q_i)``: linear in the student's
    probabilities, so it is lowest at a one-hot student on the teacher's top bucket, not at the
    teacher's distribution (``docs/first-method.md``; tested on a tensor).

    Same parameters as :func:`topk_kd_loss` (no ``eps``). ``teacher_ids`` must be distinct within a
    position. ``label_smoothing`` applies to the k + 1 buckets (the rest is one of the "others").

    Examples
    --------
    >>> logits = torch.tensor([[[2.0, 1.0, 0.0]]])
    >>> ids, probs = torch.tensor([[[0, 1]]]), torch.tensor([[[0.7, 0.2]]])
    >>> round(float(topk_rest_loss(logits, ids, probs)), 4)
    0.0058
    """
    _check_logits(student_logits)
    mask = _check_mask(mask, student_logits)
    ids, p = _sparse_target("teacher", teacher_ids, teacher_probs, student_logits, mask)
    _check_reduction(reduction)
    factor = _check_smoothing(label_smoothing)
    logits = _float(student_logits[mask])  # (N, V)
    p = p.to(logits.dtype)  # (N, k)

    lse_all = torch.logsumexp(logits, dim=-1, keepdim=True)  # (N, 1)
    log_q = logits.gather(-1, ids) - lse_all  # (N, k)
    if ids.shape[-1] < logits.shape[-1]:
        rest_t = (1.0 - p.sum(-1, keepdim=True)).clamp_min(0.0)
        p = torch.cat([p, rest_t], dim=-1)
        most_negative = torch.finfo(logits.dtype).min
        lse_rest = torch.logsumexp(logits.scatter(-1, ids, most_negative), dim=-1, keepdim=True)
        log_q = torch.cat([log_q, lse_rest - lse_all], dim=-1)
    # else k = V: the rest is empty for both models (float residue of 1 - sum p is not mass)
    target = p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    if factor:
        target = smooth_log_target(torch.log(target), factor).exp()
    per_pos = (torch.special.xlogy(target, target) - target * log_q).sum(-1)
    return _reduce(per_pos, mask, reduction)


def rs_kd_loss(
    student_logits: torch.Tensor,
    sampled_ids: torch.Tensor,
    sampled_weights: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""RS-KD: importance-sampled teacher tokens, an unbiased estimate of the full cross-entropy.

    With ``m`` tokens ``x_1..x_m`` drawn i.i.d. from a proposal ``q`` and importance weights
    ``w(v) = count(v)/m * p_T(v)/q(v)``, the sparse target ``\hat p(v) = w(v)`` satisfies
    ``E[\hat p(v)] = p_T(v)`` for every ``v``, so

    .. math::
        \hat{\mathcal{L}} = -\sum_j w_j \log p_S(id_j), \qquad
        \mathbb{E}[\hat{\mathcal{L}}] = -\sum_v p_T(v) \log p_S(v)
                                      = \mathrm{KL}(p_T \| p_S) + H(p_T),

    the full-vocabulary cross-entropy: its value is the dense KL up to the student-independent
    constant ``H(p_T)``, and its gradient w.r.t. the student logits is an unbiased estimate of the
    dense KL's gradient ``p_S - p_T``. ``p_S`` is the student's *full-vocabulary* softmax (no
    renormalization over the sample — that would reintroduce the bias of top-k KD).
    :func:`sample_rs_tokens` uses ``q = p_T``, so ``w = count/m`` and a position's weights sum to 1.

    Parameters
    ----------
    student_logits : Tensor of shape (B, T, V)
    sampled_ids : integer Tensor of shape (B, T, m)
        Sampled token ids (duplicates allowed; a zero weight makes a slot inert).
    sampled_weights : Tensor of shape (B, T, m)
        Non-negative importance weights.
    mask : bool Tensor of shape (B, T), default=None
    reduction : {"mean", "sum", "none"}, default="mean"

    References
    ----------
    .. [1] A. Anshumann et al., "Sparse Logit Sampling: Accelerating Knowledge Distillation in
       LLMs", ACL 2025.

    Examples
    --------
    >>> logits = torch.zeros(1, 1, 4)
    >>> ids, w = torch.tensor([[[1, 3]]]), torch.tensor([[[0.5, 0.5]]])
    >>> round(float(rs_kd_loss(logits, ids, w)), 4)  # log 4
    1.3863
    """
    _check_logits(student_logits)
    mask = _check_mask(mask, student_logits)
    ids, w = _sparse_target("sampled", sampled_ids, sampled_weights, student_logits, mask)
    _check_reduction(reduction)
    logits = _float(student_logits[mask])
    w = w.to(logits.dtype)
    log_p = logits.gather(-1, ids) - torch.logsumexp(logits, dim=-1, keepdim=True)
    per_pos = -(w * log_p).sum(-1)
    return _reduce(per_pos, mask, reduction)


def sample_rs_tokens(
    teacher: torch.Tensor,
    m: int,
    *,
    generator: torch.Generator | None = None,
    from_logits: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw RS-KD tokens: ``m`` i.i.d. samples from ``p_T`` (proposal ``q = p_T``), merged.

    Samples are sorted by id and duplicates merged: the first slot of each distinct id carries
    ``count/m``, repeated slots keep the id with weight 0. Weights of a position sum to 1 and are
    multiples of ``1/m`` (the store keeps the counts exactly). Deterministic given ``generator``.

    Parameters
    ----------
    teacher : Tensor of shape (..., V)
        Teacher logits (``from_logits=True``) or probabilities.
    m : int
        Samples per position, ``1 <= m <= 255``.
    generator : torch.Generator, default=None
    from_logits : bool, default=True

    Returns
    -------
    ids : int64 Tensor of shape (..., m)
    weights : float32 Tensor of shape (..., m)

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> ids, w = sample_rs_tokens(torch.tensor([[0.0, 0.0, 50.0]]), 4, generator=g)
    >>> ids.tolist(), w.tolist()
    ([[2, 2, 2, 2]], [[1.0, 0.0, 0.0, 0.0]])
    """
    if not isinstance(teacher, torch.Tensor) or teacher.dim() < 1 or teacher.shape[-1] < 1:
        raise ValueError(f"Expected teacher of shape (..., V), got {_shape(teacher)}")
    if not isinstance(m, int) or not 1 <= m <= 255:
        raise ValueError(f"Expected an int 1 <= m <= 255, got {m!r}")
    lead, v = teacher.shape[:-1], teacher.shape[-1]
    x = _float(teacher.detach()).reshape(-1, v)
    probs = torch.softmax(x, dim=-1) if from_logits else x
    if probs.numel() and not bool(((probs >= 0) & torch.isfinite(probs)).all()):
        raise ValueError("Expected finite, non-negative teacher probabilities")
    if probs.shape[0] == 0:
        ids = torch.zeros(0, m, dtype=torch.long, device=probs.device)
    else:
        ids = torch.multinomial(probs, m, replacement=True, generator=generator)
    ids, _ = ids.sort(dim=-1)
    first = torch.ones_like(ids, dtype=torch.bool)
    first[:, 1:] = ids[:, 1:] != ids[:, :-1]
    counts = (ids.unsqueeze(-1) == ids.unsqueeze(-2)).sum(-1)
    weights = torch.where(first, counts.float() / m, torch.zeros((), device=ids.device))
    return ids.reshape(*lead, m), weights.reshape(*lead, m)


def full_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Dense forward KL(p_T || p_S) over the full vocabulary (the online-teacher baseline).

    Both distributions are ``log_softmax(logits / temperature)``; the KL is computed from the two
    log-probabilities (``kl_div(..., log_target=True)``). No ``temperature**2`` factor is applied.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor of shape (B, T, V)
    mask : bool Tensor of shape (B, T), default=None
    temperature : float, default=1.0
    reduction : {"mean", "sum", "none"}, default="mean"

    Examples
    --------
    >>> s = torch.tensor([[[0.0, 0.0]]]); t = torch.tensor([[[0.0, 0.0]]])
    >>> float(full_kd_loss(s, t))
    0.0
    """
    _check_logits(student_logits)
    mask = _check_mask(mask, student_logits)
    if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"Expected teacher_logits of shape {tuple(student_logits.shape)}, got "
            f"{_shape(teacher_logits)} (teacher and student must share a vocabulary)"
        )
    if not teacher_logits.is_floating_point():
        raise ValueError(f"Expected floating-point teacher_logits, got {teacher_logits.dtype}")
    if not (temperature > 0 and temperature < float("inf")):
        raise ValueError(f"Expected temperature > 0, got {temperature!r}")
    _check_reduction(reduction)
    log_s = torch.log_softmax(_float(student_logits[mask]) / temperature, dim=-1)
    log_t = torch.log_softmax(_float(teacher_logits[mask]).to(log_s.dtype) / temperature, dim=-1)
    per_pos = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(-1)
    return _reduce(per_pos, mask, reduction)


def ce_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Cross-entropy on one-hot labels; ``labels == -100`` are ignored.

    Parameters
    ----------
    student_logits : Tensor of shape (B, T, V)
    labels : integer Tensor of shape (B, T)
        Target id of ``student_logits[b, t]`` (already aligned; no shift), or -100.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"`` over non-ignored positions (0 if there are none).

    Examples
    --------
    >>> round(float(ce_loss(torch.zeros(1, 2, 4), torch.tensor([[3, -100]]))), 4)
    1.3863
    """
    _check_logits(student_logits)
    bt = tuple(student_logits.shape[:2])
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != bt:
        raise ValueError(
            f"Expected labels of shape {tuple(student_logits.shape[:2])}, got {_shape(labels)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"Expected integer labels, got {labels.dtype}")
    _check_reduction(reduction)
    mask = labels != IGNORE_INDEX
    v = student_logits.shape[-1]
    valid = labels[mask]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= v):
        raise ValueError(f"Expected labels in [0, {v}) or -100, got {valid.min()}..{valid.max()}")
    per_pos = F.cross_entropy(_float(student_logits[mask]), valid.long(), reduction="none")
    return _reduce(per_pos, mask, reduction)


def mix_ce(kd: torch.Tensor, ce: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * ce + (1 - alpha) * kd``: optional CE mixing (``alpha=0`` is pure distillation).

    Examples
    --------
    >>> float(mix_ce(torch.tensor(2.0), torch.tensor(4.0), 0.25))
    2.5
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Expected 0 <= alpha <= 1, got {alpha!r}")
    if alpha == 0.0:
        return kd
    if alpha == 1.0:
        return ce
    return alpha * ce + (1.0 - alpha) * kd
