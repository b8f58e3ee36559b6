"""Fine-tuning: cross-entropy on the answer letter of multiple-choice items (issue 4, item 1).

This is how the default study's teacher is made (SmolLM2-135M on ``countries`` train) and the
``ce`` baseline of the students. The loop is :func:`first_train.trainer.train`; this module only
says what a batch's loss is and what identifies a run.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from first_eval.digest import code_version, content_hash, model_digest
from first_train.config import FinetuneConfig
from first_train.trainer import TrainResult

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["answer_ce_objective", "run_finetune"]


def answer_ce_objective(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Mean cross-entropy of the trained positions' targets (the answer letters)."""
    from first_train.data import kept_logits
    from first_train.losses import ce_loss

    logits = kept_logits(model, batch)
    return ce_loss(logits, batch["targets"][batch["keep"]].unsqueeze(0))


def run_finetune(cfg: FinetuneConfig, *, accelerator: Any = None) -> TrainResult:
    """Fine-tune ``cfg.model`` on ``cfg.dataset``/``cfg.split``; write an HF model dir to ``cfg.out``."""
    from first_eval.zoo import load_model
    from first_train.data import collate, dataset_fingerprint, load_examples
    from first_train.trainer import train

    model, tokenizer = load_model(cfg.model)
    items, examples = load_examples(cfg.dataset, cfg.split, cfg.limit, tokenizer, template=cfg.template,
                                    seed=cfg.seed, max_length=cfg.max_length)
    data_hash = dataset_fingerprint(examples)
    run_hash = content_hash({"stage": "finetune", "code": code_version("finetune"), "model": model_digest(cfg.model),
                             "data": data_hash, "config": cfg.hashed_dict()})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    record = {"stage": "finetune", "model": cfg.model, "dataset": cfg.dataset, "split": cfg.split,
              "n_items": len(examples), "dataset_hash": data_hash, "config": cfg.to_dict()}
    return train(model, tokenizer, examples, collate=functools.partial(collate, pad_id=pad_id, mode="response"),
                 objective=answer_ce_objective, cfg=cfg, out=cfg.out, run_hash=run_hash, record=record,
                 accelerator=accelerator, description="finetune")
