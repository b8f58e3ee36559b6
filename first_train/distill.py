"""Distillation: train a student on a teacher's top-k store (issue 4, item 4).

The student reads the same token sequences the teacher was run on (the store's
``first_extract.json`` names the dataset; its ``dataset_hash`` is checked) and at every stored
position learns the teacher's distribution through one of the losses of
:mod:`first_train.losses`:

==============  ======================================================================
``first``       KL(p'_T ‖ p_S) over the k stored tokens, p' re-shaped with the store's fitted
                calibration (``reshape``: softmax(p / c); ``temperature``: softmax(log p / T)).
``first-authors`` the authors' code: both sides re-shaped, KL(softmax(p_T / c) ‖ softmax(q_S / c_S)),
                ``c_S`` = ``--student-c`` or the fitted c (``docs/first-method.md``).
``topk``        the same without re-shaping.
``topk-rest``   k + 1 buckets: the k tokens and the rest of the mass.
``rs-kd``       importance-sampled tokens stored at extraction (``--rs-samples``).
``full-kd``     dense KL against the teacher run online (the expensive baseline).
``ce``          cross-entropy on the answer letters (ordinary fine-tuning, same data).
==============  ======================================================================

``alpha > 0`` mixes in cross-entropy: ``alpha·CE + (1 − alpha)·KD``. Teacher and student must
share a tokenizer (the store's ids are the student's ids); a student with another vocabulary is
refused.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from first_eval.errors import UserError
from first_train.config import DistillConfig
from first_train.data import Example
from first_train.trainer import TrainResult

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["EXTRACT_RECORD", "DistillExample", "check_vocabulary", "effective_student_c", "first_target",
           "load_store_examples", "make_objective", "run_distill"]

EXTRACT_RECORD = "first_extract.json"


@dataclass(frozen=True)
class DistillExample:
    """An example with the teacher's stored rows for its trained positions."""

    example: Example
    ids: torch.Tensor  # (T, k) int64
    probs: torch.Tensor  # (T, k) float32
    rs_ids: torch.Tensor | None = None  # (T, m)
    rs_weights: torch.Tensor | None = None  # (T, m)


def collate_distill(rows: Sequence[DistillExample], *, pad_id: int, mode: str) -> dict[str, Any]:
    """A :func:`first_train.data.collate` batch plus the teacher's rows, aligned with ``keep``."""
    import torch

    from first_train.data import collate

    batch = collate([r.example for r in rows], pad_id=pad_id, mode=mode)
    batch["teacher_ids"] = torch.cat([r.ids for r in rows]).unsqueeze(0)
    batch["teacher_probs"] = torch.cat([r.probs for r in rows]).unsqueeze(0)
    if rows[0].rs_ids is not None:
        batch["rs_ids"] = torch.cat([r.rs_ids for r in rows]).unsqueeze(0)
        batch["rs_weights"] = torch.cat([r.rs_weights for r in rows]).unsqueeze(0)
    return batch


def check_vocabulary(manifest: dict[str, Any], tokenizer: Any, model: Any, student: str) -> None:
    """Refuse a student whose tokenizer or vocabulary differs from the store's teacher."""
    from first_train.data import tokenizer_fingerprint

    rows = int(model.get_output_embeddings().weight.shape[0])
    teacher_rows = manifest.get("vocab_size")
    student_hash = tokenizer_fingerprint(tokenizer)
    if student_hash != manifest["tokenizer_hash"] or (teacher_rows is not None and rows != teacher_rows):
        raise UserError(
            f"student {student} does not share the teacher's vocabulary (teacher {manifest['teacher']}: "
            f"{teacher_rows} logits, tokenizer {manifest['tokenizer_hash']}; student: {rows} logits, "
            f"tokenizer {student_hash}); top-k distillation needs the same tokenizer")


def first_target(calibration: dict[str, Any], *, student_c: float | None = None, label_smoothing: float = 0.0):
    """The FIRST loss of the store's calibration: ``(logits, ids, probs) -> loss``.

    ``reshape`` with ``c``: :func:`~first_train.losses.first_loss` (softmax(p / c) over the k; with
    ``student_c`` the student side re-shaped too, the authors' code); ``temperature`` with ``T``:
    top-k KD towards softmax(log p / T) over the k; no temperature (nothing beat the un-calibrated
    teacher on validation): plain top-k KD.
    """
    import torch

    from first_train import losses as L
    from first_train.reshape import temperature_logprobs

    t = calibration.get("temperature")
    if t is None:
        if student_c is not None:
            raise UserError("the store's calibration kept the raw teacher (no c beat it on validation), so there "
                            "is no teacher temperature to pair with --student-c")
        return functools.partial(L.topk_kd_loss, label_smoothing=label_smoothing)
    if calibration["method"] == "reshape":
        return functools.partial(L.first_loss, temperature_c=t, student_c=student_c, label_smoothing=label_smoothing)
    if student_c is not None:
        raise UserError("the store's calibration is a logit temperature: the student side can only be re-shaped "
                        "with a reshape calibration (`first-train calibrate --method reshape`)")

    def temperature_kd(logits, ids, probs):
        target = torch.exp(temperature_logprobs(torch.log(probs.clamp_min(1e-30)), t))
        return L.topk_kd_loss(logits, ids, target, label_smoothing=label_smoothing)

    return temperature_kd


def effective_student_c(loss: str, student_c: float | None, calibration: dict[str, Any] | None) -> float | None:
    """The student temperature a run uses: ``student_c``, else the fitted c for ``first-authors``."""
    if student_c is not None or loss != "first-authors":
        return student_c
    if calibration and calibration.get("method") == "reshape":
        return calibration.get("temperature")
    return None


def make_objective(loss: str, *, alpha: float = 0.0, calibration: dict[str, Any] | None = None,
                   teacher: torch.nn.Module | None = None, student_c: float | None = None,
                   label_smoothing: float = 0.0, norm_eps: float = 0.0):
    """``objective(model, batch) -> loss`` for one of the distillation losses."""
    from first_train import losses as L
    from first_train.data import kept_logits

    first = None
    if loss in ("first", "first-authors"):
        first = first_target(calibration, student_c=effective_student_c(loss, student_c, calibration),
                             label_smoothing=label_smoothing)

    def objective(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        logits = kept_logits(model, batch)  # (1, N, V)
        ce = None
        if loss == "ce" or alpha > 0:
            ce = L.ce_loss(logits, batch["targets"][batch["keep"]].unsqueeze(0))
        if loss == "ce":
            return ce
        if first is not None:
            kd = first(logits, batch["teacher_ids"], batch["teacher_probs"])
        elif loss == "topk":
            kd = L.topk_kd_loss(logits, batch["teacher_ids"], batch["teacher_probs"], eps=norm_eps,
                                label_smoothing=label_smoothing)
        elif loss == "topk-rest":
            kd = L.topk_rest_loss(logits, batch["teacher_ids"], batch["teacher_probs"], label_smoothing=label_smoothing)
        elif loss == "rs-kd":
            kd = L.rs_kd_loss(logits, batch["rs_ids"], batch["rs_weights"])
        elif loss == "full-kd":
            import torch

            with torch.no_grad():
                teacher_logits = kept_logits(teacher, batch, frozen=False)
            kd = L.full_kd_loss(logits, teacher_logits)
        else:  # pragma: no cover - the config checks the name
            raise ValueError(f"unknown loss {loss!r}")
        return kd if ce is None else L.mix_ce(kd, ce, alpha)

    return objective


def _open_store(path: str):
    from first_train.store import TopKStore

    try:
        return TopKStore(path)
    except ValueError as exc:
        raise UserError(f"--store {path}: {exc}") from None


def load_store_examples(store, tokenizer: Any) -> tuple[dict[str, Any], list[DistillExample]]:
    """The examples a store was extracted on, each with its teacher rows (checked against the store)."""
    from first_train.data import dataset_fingerprint, load_examples

    record_path = Path(store.directory) / EXTRACT_RECORD
    if not record_path.is_file():
        raise UserError(f"{store.directory} has no {EXTRACT_RECORD}: it was not written by first-train extract, "
                        "so the sequences it describes are unknown")
    source = json.loads(record_path.read_text())
    _, examples = load_examples(source["dataset"], source["split"], source["limit"], tokenizer,
                                template=source["template"])
    if dataset_fingerprint(examples) != store.manifest["dataset_hash"]:
        raise UserError(f"the dataset {source['dataset']!r} ({source['split']}) no longer matches the store "
                        f"{store.directory}: extract it again")
    mode = store.manifest["positions"]
    records = {r.seq_id: r for r in store}
    rows = []
    for e in examples:
        r = records.get(e.id)
        if r is None:
            raise UserError(f"{store.directory} has no rows for item {e.id!r}")
        positions = e.positions(mode)
        if r.ids.shape[0] != len(positions) or r.start != positions[0]:
            raise UserError(f"{store.directory}: the rows of item {e.id!r} do not match its tokens")
        rows.append(DistillExample(e, r.ids, r.probs, r.rs_ids, r.rs_weights))
    return source, rows


def run_distill(cfg: DistillConfig, *, accelerator: Any = None) -> TrainResult:
    """Distill ``cfg.student`` from the store ``cfg.store``; write an HF model dir to ``cfg.out``."""
    from first_eval.zoo import load_model
    from first_eval.digest import code_version, content_hash, model_digest
    from first_train.trainer import make_accelerator, train

    store = _open_store(cfg.store)
    manifest = store.manifest
    calibration = manifest.get("calibration")
    if cfg.loss in ("first", "first-authors") and not calibration:
        raise UserError(f"--loss {cfg.loss} needs a calibrated store; run `first-train calibrate --store {cfg.store} "
                        "...` first (or use --loss topk for no re-shaping)")
    if cfg.loss == "first-authors" and calibration and calibration.get("temperature") is not None \
            and calibration.get("method") != "reshape":
        raise UserError(f"--loss first-authors re-shapes softmax(p / c) on both sides, but {cfg.store} is calibrated "
                        f"with a logit temperature; run `first-train calibrate --method reshape` on it")
    if cfg.loss == "rs-kd" and not store.has_rs:
        raise UserError("--loss rs-kd needs RS-KD samples; extract the store with --rs-samples M")
    model, tokenizer = load_model(cfg.student)
    check_vocabulary(manifest, tokenizer, model, cfg.student)
    source, rows = load_store_examples(store, tokenizer)
    if cfg.loss != "rs-kd":
        rows = [DistillExample(r.example, r.ids, r.probs) for r in rows]
    accelerator = accelerator or make_accelerator()
    teacher = None
    teacher_spec = cfg.teacher or manifest["teacher"]
    if cfg.loss == "full-kd":
        teacher, teacher_tokenizer = load_model(teacher_spec)
        check_vocabulary(manifest, teacher_tokenizer, teacher, teacher_spec)
        teacher.to(accelerator.device).eval().requires_grad_(False)
    # The calibration is an input of --loss first only: re-fitting c does not re-train the others.
    reshaped = cfg.loss in ("first", "first-authors")
    ignored = ("created_by",) if reshaped else ("created_by", "calibration")
    store_identity = {k: v for k, v in manifest.items() if k not in ignored}
    run_hash = content_hash({"stage": "distill", "code": code_version("distill"), "student": model_digest(cfg.student),
                             "store": store_identity,
                             "teacher": model_digest(teacher_spec) if cfg.loss == "full-kd" else None,
                             "config": cfg.hashed_dict()})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    record = {"stage": "distill", "student": cfg.student, "store": str(cfg.store), "loss": cfg.loss,
              "alpha": cfg.alpha, "calibration": calibration if reshaped else None,
              "student_c": effective_student_c(cfg.loss, cfg.student_c, calibration) if reshaped else None,
              "label_smoothing": cfg.label_smoothing, "norm_eps": cfg.norm_eps,
              "dataset": source, "n_items": len(rows), "config": cfg.to_dict()}
    objective = make_objective(cfg.loss, alpha=cfg.alpha, calibration=calibration, teacher=teacher,
                               student_c=cfg.student_c, label_smoothing=cfg.label_smoothing, norm_eps=cfg.norm_eps)
    return train(model, tokenizer, rows,
                 collate=functools.partial(collate_distill, pad_id=pad_id, mode=manifest["positions"]),
                 objective=objective, cfg=cfg, out=cfg.out, run_hash=run_hash, record=record,
                 accelerator=accelerator, description=f"distill ({cfg.loss})")
