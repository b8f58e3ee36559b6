"""Configuration of the ``first-train`` stages: one dataclass per stage (STYLE.md 8).

The same dataclass feeds the command line (every field becomes a ``--flag`` whose help is the
field's ``metadata["help"]``, see :mod:`first_train.commands`) and the pipeline's YAML file
(:meth:`StageConfig.from_dict`). Ranges are checked once, in ``__post_init__``, and raise
:class:`~first_eval.errors.UserError` with one clear line.

Example
-------
>>> cfg = FinetuneConfig(model="smollm2-135m", dataset="countries", out="ckpt", max_steps=10)
>>> cfg.lr, cfg.batch_size
(0.0001, 8)
>>> FinetuneConfig(model="m", dataset="d", out="o", lr=-1.0)
Traceback (most recent call last):
...
first_eval.errors.UserError: --lr must be > 0, got -1.0
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from first_eval.errors import UserError

LOSSES = ("first", "first-authors", "topk", "topk-rest", "rs-kd", "full-kd", "ce")
TOPK_LOSSES = ("first", "first-authors", "topk", "topk-rest")
POSITIONS = ("response", "all")
CALIBRATION_METHODS = ("reshape", "logit-temperature", "both")
SCHEDULES = ("constant", "linear", "cosine")
FROZEN_CACHE = ("auto", "memory", "disk", "off")
TEMPLATES = ("plain", "chat")


def _types(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) or (hint,)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass(kw_only=True)
class StageConfig:
    """Shared behaviour: YAML/dict loading with unknown-key errors and a JSON-able view."""

    #: Fields that do not change a stage's result (left out of its content hash).
    NOT_HASHED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, where: str = "") -> StageConfig:
        """Build from a mapping (a YAML section); unknown keys and bad values are UserErrors."""
        data = dict(data or {})
        where = where or cls.__name__
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        hints = typing.get_type_hints(cls)
        for key, value in data.items():  # YAML writes 2 for 2.0: keep hashes and types stable
            if isinstance(value, int) and not isinstance(value, bool) and float in _types(hints[key]) \
                    and int not in _types(hints[key]):
                data[key] = float(value)
        try:
            return cls(**data)
        except (TypeError, UserError) as exc:  # a missing required key, a value out of range
            raise UserError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hashed_dict(self) -> dict[str, Any]:
        """The fields that determine the stage's output (for content hashes)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.NOT_HASHED}

    def replace(self, **changes: Any) -> StageConfig:
        return dataclasses.replace(self, **changes)


def _positive(name: str, value: float | int | None, *, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = value is not None and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise UserError(f"{_flag(name)} must be {'≥ 0' if allow_zero else '> 0'}, got {value}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{_flag(name)} must be one of {', '.join(choices)}, got {value!r}")


def _required(name: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{_flag(name)} is required")


# ------------------------------------------------------------------------------- training loop


@dataclass(kw_only=True)
class TrainConfig(StageConfig):
    """Options of the training loop shared by ``finetune`` and ``distill`` (:mod:`first_train.trainer`)."""

    NOT_HASHED: ClassVar[tuple[str, ...]] = ("out", "save_every", "keep_checkpoints", "resume", "overwrite", "progress",
                                             "frozen_cache_mb")

    seed: int = field(default=0, metadata=_help("Seed of data order, sampling and initialization."))
    lr: float = field(default=1e-4, metadata=_help("Peak learning rate (AdamW)."))
    batch_size: int = field(default=8, metadata=_help("Sequences per micro-batch on each process."))
    grad_accum: int = field(default=1, metadata=_help("Micro-batches accumulated per optimizer step."))
    epochs: float = field(default=1.0, metadata=_help("Passes over the data (ignored when --max-steps is given)."))
    max_steps: int | None = field(default=None, metadata=_help("Optimizer steps to run (overrides --epochs)."))
    warmup_steps: int = field(default=0, metadata=_help("Linear learning-rate warm-up steps."))
    schedule: str = field(default="linear", metadata=_help(f"Learning-rate schedule: {', '.join(SCHEDULES)}."))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    max_grad_norm: float = field(default=1.0, metadata=_help("Clip the gradient norm to this (0: no clipping)."))
    train_top_layers: int | None = field(
        default=None,
        metadata=_help("Train only the last N decoder layers and the final norm (default: all weights)."))
    frozen_cache: str = field(default="auto", metadata=_help(
        "With --train-top-layers: compute the frozen bottom layers once per item and cache their output "
        "(auto: in memory up to --frozen-cache-mb, else on disk under $FIRST_HOME/activations; memory; "
        "disk; off: recompute every step)."))
    frozen_cache_mb: int = field(default=2048, metadata=_help(
        "Memory budget of the frozen-layer cache in MiB (auto mode spills to disk past it)."))
    group_by_length: bool = field(default=False, metadata=_help(
        "Draw batches from length buckets: each epoch's shuffled order is cut into groups of 16 batches, "
        "each group sorted by length, then the batches are shuffled (less padding, but batches of one kind "
        "of item where length follows the kind; see docs/training.md)."))
    full_logits: bool = field(default=False, metadata=_help(
        "Compute the LM head at every position, then select the trained ones (the slow reference path; "
        "default: the head only where the loss reads it)."))
    fused_adamw: bool = field(default=True, metadata=_help(
        "Use torch's fused AdamW kernel (same update rule, one pass over the weights; --no-fused-adamw: "
        "the per-tensor loop)."))
    max_length: int = field(default=512, metadata=_help("Refuse sequences longer than this many tokens."))
    save_every: int = field(default=0, metadata=_help("Write a checkpoint every N steps (0: only the final model)."))
    keep_checkpoints: int | None = field(
        default=None, metadata=_help("Keep only the newest N step checkpoints (default: all)."))
    resume: bool = field(default=True, metadata=_help("Resume from the newest checkpoint in --out if there is one."))
    overwrite: bool = field(default=False, metadata=_help(
        "Replace an --out directory written with other settings (one with the same settings is kept)."))
    progress: bool = field(default=True, metadata=_help("Show a progress bar."))

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _positive("epochs", self.epochs)
        for name in ("batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise UserError(f"{_flag(name)} must be ≥ 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps must be ≥ 1, got {self.max_steps}")
        for name in ("warmup_steps", "save_every"):
            if getattr(self, name) < 0:
                raise UserError(f"{_flag(name)} must be ≥ 0, got {getattr(self, name)}")
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        _positive("max_grad_norm", self.max_grad_norm, allow_zero=True)
        _choice("schedule", self.schedule, SCHEDULES)
        if self.train_top_layers is not None and self.train_top_layers < 1:
            raise UserError(f"--train-top-layers must be ≥ 1, got {self.train_top_layers}")
        _choice("frozen_cache", self.frozen_cache, FROZEN_CACHE)
        if self.frozen_cache_mb < 0:
            raise UserError(f"--frozen-cache-mb must be ≥ 0, got {self.frozen_cache_mb}")
        if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
            raise UserError(f"--keep-checkpoints must be ≥ 1, got {self.keep_checkpoints}")


# ------------------------------------------------------------------------------- stages


@dataclass(kw_only=True)
class DataOptions(StageConfig):
    """Which items, and how they are turned into prompts (must match the scorer)."""

    dataset: str = field(metadata=_help("Dataset: built-in name (countries, countries-ood, mmlu) or a JSONL path."))
    split: str | None = field(default=None, metadata=_help("Split of the dataset."))
    limit: int | None = field(default=None, metadata=_help("Use at most N items."))
    template: str = field(default="plain", metadata=_help(f"Prompt template the scorer uses: {', '.join(TEMPLATES)}."))

    def __post_init__(self) -> None:
        _required("dataset", self.dataset)
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be ≥ 1, got {self.limit}")
        _choice("template", self.template, TEMPLATES)


@dataclass(kw_only=True)
class FinetuneConfig(TrainConfig, DataOptions):
    """``first-train finetune``: cross-entropy on the answer letter of multiple-choice items."""

    model: str = field(metadata=_help("Model spec to fine-tune (smollm2-135m, a local HF dir, …)."))
    out: str = field(metadata=_help("Output directory: the final HF model, checkpoints/step-N/ beside it."))
    split: str | None = field(default="train", metadata=_help("Training split."))

    def __post_init__(self) -> None:
        _required("model", self.model)
        _required("out", self.out)
        DataOptions.__post_init__(self)
        TrainConfig.__post_init__(self)


@dataclass(kw_only=True)
class ExtractConfig(DataOptions):
    """``first-train extract``: the teacher's top-k at every response position, into a store."""

    NOT_HASHED: ClassVar[tuple[str, ...]] = ("out", "batch_size", "chunk_sequences", "progress", "overwrite",
                                             "full_logits")

    teacher: str = field(metadata=_help("Teacher model spec."))
    out: str = field(metadata=_help("Store directory (manifest.json + shards)."))
    split: str | None = field(default="train", metadata=_help("Split to extract."))
    k: int = field(default=5, metadata=_help("Teacher tokens kept per position (top-k)."))
    positions: str = field(default="response", metadata=_help(
        "Positions stored: 'response' (the answer-letter position) or 'all' (every position)."))
    rs_samples: int = field(default=0, metadata=_help(
        "Also store M importance-sampled tokens per position for --loss rs-kd (0: none)."))
    batch_size: int = field(default=16, metadata=_help("Sequences per forward pass."))
    full_logits: bool = field(default=False, metadata=_help(
        "Compute the LM head at every position, then select the stored ones (the slow reference path)."))
    chunk_sequences: int = field(default=1024, metadata=_help(
        "Sequences per shard file; a resumed extraction restarts after the last whole file."))
    seed: int = field(default=0, metadata=_help("Seed of the RS-KD sampling."))
    overwrite: bool = field(default=False, metadata=_help(
        "Replace a store written with other settings (one with the same settings is kept)."))
    progress: bool = field(default=True, metadata=_help("Show a progress bar."))

    def __post_init__(self) -> None:
        _required("teacher", self.teacher)
        _required("out", self.out)
        DataOptions.__post_init__(self)
        if not 1 <= self.k <= 255:
            raise UserError(f"--k must be in [1, 255], got {self.k}")
        _choice("positions", self.positions, POSITIONS)
        if not 0 <= self.rs_samples <= 255:
            raise UserError(f"--rs-samples must be in [0, 255], got {self.rs_samples}")
        if self.batch_size < 1 or self.chunk_sequences < 1:
            raise UserError(f"--batch-size and --chunk-sequences must be ≥ 1, got {self.batch_size} "
                            f"and {self.chunk_sequences}")


@dataclass(kw_only=True)
class CalibrateConfig(DataOptions):
    """``first-train calibrate``: fit the re-shaping temperature c on a validation split."""

    NOT_HASHED: ClassVar[tuple[str, ...]] = ("store", "batch_size", "progress")

    store: str = field(metadata=_help("Top-k store directory written by `first-train extract`."))
    teacher: str = field(metadata=_help("Teacher model spec (the one the store was extracted from)."))
    split: str | None = field(default="val", metadata=_help("Validation split the temperature is fitted on."))
    method: str = field(default="reshape", metadata=_help(
        "reshape (FIRST: p/c over the top-k), logit-temperature (log-probabilities / T) or both "
        "(fit both, keep the lower validation ECE)."))
    bins: int = field(default=10, metadata=_help("Equal-width bins of the ECE."))
    batch_size: int = field(default=16, metadata=_help("Sequences per forward pass."))
    progress: bool = field(default=True, metadata=_help("Show a progress bar."))

    def __post_init__(self) -> None:
        _required("store", self.store)
        _required("teacher", self.teacher)
        DataOptions.__post_init__(self)
        _choice("method", self.method, CALIBRATION_METHODS)
        if self.bins < 1 or self.batch_size < 1:
            raise UserError(f"--bins and --batch-size must be ≥ 1, got {self.bins} and {self.batch_size}")


@dataclass(kw_only=True)
class DistillConfig(TrainConfig):
    """``first-train distill``: train a student on a teacher's top-k store."""

    student: str = field(metadata=_help("Student model spec; must share the teacher's tokenizer."))
    store: str = field(metadata=_help("Top-k store directory (`first-train extract`, then `calibrate` for --loss first)."))
    out: str = field(metadata=_help("Output directory: the student as an HF model directory."))
    loss: str = field(default="first", metadata=_help(
        "first (re-shaped top-k, needs a calibrated store), first-authors (both sides re-shaped, as the "
        "authors' code; --student-c defaults to the fitted c), topk, topk-rest, rs-kd (needs --rs-samples "
        "at extraction), full-kd (online teacher), ce (one-hot answers)."))
    alpha: float = field(default=0.0, metadata=_help("Mix in cross-entropy: alpha·CE + (1−alpha)·KD."))
    student_c: float | None = field(default=None, metadata=_help(
        "Re-shape the student side too, softmax(q / C) of its probabilities at the teacher's tokens (the "
        "authors' --student_temp; with --loss first or first-authors)."))
    label_smoothing: float = field(default=0.0, metadata=_help(
        "The authors' label smoothing of the top-k target: the top token's log-target lowered by F, the "
        "others' raised by F/(n−1), renormalized (first, first-authors, topk, topk-rest)."))
    norm_eps: float = field(default=0.0, metadata=_help(
        "With --loss topk: the authors' linear normalization, (p + EPS) renormalized on both sides."))
    teacher: str | None = field(default=None, metadata=_help(
        "Teacher spec run online for --loss full-kd (default: the store's teacher)."))

    def __post_init__(self) -> None:
        _required("student", self.student)
        _required("store", self.store)
        _required("out", self.out)
        _choice("loss", self.loss, LOSSES)
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"--alpha must be in [0, 1], got {self.alpha}")
        _positive("student_c", self.student_c, allow_none=True)
        if self.student_c is not None and self.loss not in ("first", "first-authors"):
            raise UserError(f"--student-c applies to --loss first or first-authors, not {self.loss}")
        _positive("label_smoothing", self.label_smoothing, allow_zero=True)
        if self.label_smoothing and self.loss not in TOPK_LOSSES:
            raise UserError(f"--label-smoothing applies to the top-k losses ({', '.join(TOPK_LOSSES)}), "
                            f"not {self.loss}")
        _positive("norm_eps", self.norm_eps, allow_zero=True)
        if self.norm_eps and self.loss != "topk":
            raise UserError(f"--norm-eps applies to --loss topk, not {self.loss}")
        TrainConfig.__post_init__(self)
