"""Study configuration: YAML validated by dataclasses (STYLE.md 8).

A study names datasets (each with a role), models (a zoo spec or checkpoint directory, a
``first-train`` recipe, or a post-hoc calibration of another model), the scorer settings and the
metric options. ``first-eval run`` with no ``--config`` runs ``configs/default.yaml``.

Example
-------
>>> cfg = StudyConfig.from_dict({
...     "name": "tiny",
...     "datasets": [{"name": "countries", "split": "test", "role": "in-domain"}],
...     "models": [{"name": "base", "spec": "smollm2-135m"}],
... })
>>> cfg.models[0].kind
'spec'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from first_eval.errors import UserError

ROLES = ("in-domain", "near-ood", "far-ood")
LOSSES = ("first", "first-authors", "topk", "topk-rest", "rs-kd", "full-kd", "ce")
TOPK_LOSSES = ("first", "first-authors", "topk", "topk-rest")
POSTHOC = ("temperature", "histogram", "isotonic")


def _check_keys(obj: dict, cls: type, where: str) -> None:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a mapping, got {type(obj).__name__}")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


@dataclass(frozen=True)
class DatasetConfig:
    name: str = field(metadata={"help": "Built-in name (countries, countries-ood, mmlu), JSONL path or HF name."})
    role: str = field(default="in-domain", metadata={"help": "in-domain, near-ood or far-ood."})
    split: str | None = field(default=None, metadata={"help": "Split to score (default: the dataset's test split)."})
    limit: int | None = field(default=None, metadata={"help": "Score at most this many items (stratified)."})
    label: str | None = field(default=None, metadata={"help": "Name in tables (default: name)."})

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise UserError(f"dataset {self.name!r}: role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"dataset {self.name!r}: limit must be ≥ 1, got {self.limit}")

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class FinetuneRecipe:
    model: str = field(metadata={"help": "Zoo spec or name of another model in the study to start from."})
    dataset: str = field(default="countries", metadata={"help": "Training dataset."})
    split: str = field(default="train", metadata={"help": "Training split."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training split."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate (AdamW)."})
    batch_size: int = field(default=8, metadata={"help": "Items per step."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear learning-rate warm-up steps."})
    save_every: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: only at the end)."})
    limit: int | None = field(default=None, metadata={"help": "Use at most N training items."})
    train_top_layers: int | None = field(default=None, metadata={
        "help": "Train only the last N decoder layers (the frozen rest is computed once per item)."})

    def __post_init__(self) -> None:
        if self.train_top_layers is not None and self.train_top_layers < 1:
            raise UserError(f"finetune recipe for {self.model!r}: train_top_layers must be ≥ 1, "
                            f"got {self.train_top_layers}")
        if (self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1 or self.save_every < 0
                or self.warmup_steps < 0):
            raise UserError(f"finetune recipe for {self.model!r}: epochs, lr, batch_size must be > 0 "
                            f"and save_every, warmup_steps ≥ 0")


@dataclass(frozen=True)
class DistillRecipe:
    student: str = field(metadata={"help": "Zoo spec of the student (must share the teacher's tokenizer)."})
    teacher: str = field(metadata={"help": "Name of the teacher model in this study."})
    loss: str = field(default="first", metadata={"help": f"One of {', '.join(LOSSES)}."})
    dataset: str = field(default="countries", metadata={"help": "Distillation dataset."})
    split: str = field(default="train", metadata={"help": "Split the teacher's top-k is extracted on."})
    calibration_split: str = field(default="val", metadata={"help": "Split the temperature c is fitted on."})
    k: int = field(default=5, metadata={"help": "Teacher tokens kept per position."})
    alpha: float = field(default=0.0, metadata={"help": "Weight of the CE term mixed into the KD loss."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the distillation split."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate."})
    batch_size: int = field(default=8, metadata={"help": "Items per step."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear learning-rate warm-up steps."})
    limit: int | None = field(default=None, metadata={"help": "Use at most N items."})
    train_top_layers: int | None = field(default=None, metadata={
        "help": "Train only the student's last N decoder layers (the frozen rest is computed once per item)."})
    student_c: float | None = field(default=None, metadata={
        "help": "Re-shape the student side with this temperature (first; first-authors defaults to the fitted c)."})
    label_smoothing: float = field(default=0.0, metadata={
        "help": "The authors' label smoothing factor of the top-k target (top-k losses)."})
    norm_eps: float = field(default=0.0, metadata={
        "help": "The authors' linear normalization epsilon (loss topk)."})

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise UserError(f"distill recipe: warmup_steps must be ≥ 0, got {self.warmup_steps}")
        if self.train_top_layers is not None and self.train_top_layers < 1:
            raise UserError(f"distill recipe: train_top_layers must be ≥ 1, got {self.train_top_layers}")
        if self.student_c is not None and (not self.student_c > 0 or self.loss not in ("first", "first-authors")):
            raise UserError(f"distill recipe: student_c must be > 0 and needs loss first or first-authors, got "
                            f"{self.student_c} with {self.loss}")
        if self.label_smoothing < 0 or (self.label_smoothing and self.loss not in TOPK_LOSSES):
            raise UserError(f"distill recipe: label_smoothing must be ≥ 0 and needs a top-k loss "
                            f"({', '.join(TOPK_LOSSES)}), got {self.label_smoothing} with {self.loss}")
        if self.norm_eps < 0 or (self.norm_eps and self.loss != "topk"):
            raise UserError(f"distill recipe: norm_eps must be ≥ 0 and needs loss topk, got {self.norm_eps} "
                            f"with {self.loss}")
        if self.loss not in LOSSES:
            raise UserError(f"distill recipe: loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not 1 <= self.k <= 100:
            raise UserError(f"distill recipe: k must be in [1, 100], got {self.k}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"distill recipe: alpha must be in [0, 1], got {self.alpha}")


@dataclass(frozen=True)
class PosthocRecipe:
    model: str = field(metadata={"help": "Name of the model in this study whose predictions are recalibrated."})
    method: str = field(default="temperature", metadata={"help": f"One of {', '.join(POSTHOC)}."})
    folds: int = field(default=5, metadata={"help": "Cross-fitting folds (ECE after calibration is out-of-sample)."})

    def __post_init__(self) -> None:
        if self.method not in POSTHOC:
            raise UserError(f"posthoc: method must be one of {', '.join(POSTHOC)}, got {self.method!r}")
        if self.folds < 2:
            raise UserError(f"posthoc: folds must be ≥ 2, got {self.folds}")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    spec: str | None = None
    finetune: FinetuneRecipe | None = None
    distill: DistillRecipe | None = None
    posthoc: PosthocRecipe | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("spec", "finetune", "distill", "posthoc") if getattr(self, k) is not None]
        if len(given) != 1:
            raise UserError(f"model {self.name!r}: give exactly one of spec, finetune, distill, posthoc "
                            f"(got {', '.join(given) or 'none'})")

    @property
    def kind(self) -> str:
        return next(k for k in ("spec", "finetune", "distill", "posthoc") if getattr(self, k) is not None)


@dataclass(frozen=True)
class ScorerConfig:
    template: str = field(default="plain", metadata={"help": "plain or chat."})
    shots: int = field(default=0, metadata={"help": "Few-shot examples before every question."})
    batch_tokens: int | None = field(default=None, metadata={
        "help": "Token budget of a batch; default the scorer's for the device (1024 on CPU)."})

    def __post_init__(self) -> None:
        if self.template not in ("plain", "chat"):
            raise UserError(f"scorer: template must be plain or chat, got {self.template!r}")
        if self.shots < 0 or (self.batch_tokens is not None and self.batch_tokens < 16):
            raise UserError("scorer: shots must be ≥ 0 and batch_tokens ≥ 16")


@dataclass(frozen=True)
class MetricsConfig:
    bins: int = field(default=10, metadata={"help": "Bins for ECE."})
    scheme: str = field(default="width", metadata={"help": "width or mass."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for CIs and paired tests."})

    def __post_init__(self) -> None:
        if self.bins < 1 or self.scheme not in ("width", "mass") or self.bootstrap < 0:
            raise UserError("metrics: bins ≥ 1, scheme width|mass, bootstrap ≥ 0")


@dataclass(frozen=True)
class TrajectoryConfig:
    model: str = field(metadata={"help": "A finetune-recipe model whose checkpoints are scored."})
    dataset: str = field(metadata={"help": "Dataset (by its name in `datasets`) the checkpoints are scored on."})


@dataclass(frozen=True)
class KnowledgeConfig:
    models: tuple[str, ...] = field(default=(), metadata={"help": "Models whose top-k mass is studied."})
    dataset: str = field(default="countries", metadata={"help": "Dataset of the texts."})
    split: str = field(default="test", metadata={"help": "Split."})
    limit: int = field(default=200, metadata={"help": "Items."})
    max_k: int = field(default=20, metadata={"help": "Largest k."})


@dataclass(frozen=True)
class StudyConfig:
    name: str
    datasets: tuple[DatasetConfig, ...]
    models: tuple[ModelConfig, ...]
    seed: int = 0
    scorer: ScorerConfig = ScorerConfig()
    metrics: MetricsConfig = MetricsConfig()
    comparisons: tuple[tuple[str, str], ...] = ()
    trajectory: TrajectoryConfig | None = None
    knowledge: KnowledgeConfig | None = None

    def __post_init__(self) -> None:
        if not self.datasets or not self.models:
            raise UserError("study: needs at least one dataset and one model")
        names = [m.name for m in self.models]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise UserError(f"study: model name {sorted(dup)[0]!r} is used twice")
        dnames = [d.display for d in self.datasets]
        if len(set(dnames)) != len(dnames):
            raise UserError("study: two datasets have the same name; give one a `label`")
        known = set(names)
        for m in self.models:
            refs = []
            if m.distill:
                refs.append(m.distill.teacher)
            if m.posthoc:
                refs.append(m.posthoc.model)
            for ref in refs:
                if ref not in known:
                    raise UserError(f"model {m.name!r} refers to unknown model {ref!r}")
        for a, b in self.comparisons:
            for ref in (a, b):
                if ref not in known:
                    raise UserError(f"comparisons: unknown model {ref!r}")
        if self.trajectory:
            if self.trajectory.model not in known:
                raise UserError(f"trajectory: unknown model {self.trajectory.model!r}")
            if self.trajectory.dataset not in dnames:
                raise UserError(f"trajectory: unknown dataset {self.trajectory.dataset!r}")
        if self.knowledge:
            for ref in self.knowledge.models:
                if ref not in known:
                    raise UserError(f"knowledge: unknown model {ref!r}")

    def model(self, name: str) -> ModelConfig:
        return next(m for m in self.models if m.name == name)

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudyConfig":
        _check_keys(data, cls, "study")
        try:
            datasets = tuple(_build(DatasetConfig, d, f"datasets[{i}]") for i, d in enumerate(data.get("datasets") or []))
            models = []
            for i, m in enumerate(data.get("models") or []):
                _check_keys(m, ModelConfig, f"models[{i}]")
                m = dict(m)
                for key, sub in (("finetune", FinetuneRecipe), ("distill", DistillRecipe), ("posthoc", PosthocRecipe)):
                    if m.get(key) is not None:
                        m[key] = _build(sub, m[key], f"models[{i}].{key}")
                models.append(_build(ModelConfig, m, f"models[{i}]"))
            kw: dict[str, Any] = {"name": data.get("name") or "study", "datasets": datasets, "models": tuple(models)}
            if "seed" in data:
                kw["seed"] = int(data["seed"])
            for key, sub in (("scorer", ScorerConfig), ("metrics", MetricsConfig),
                             ("trajectory", TrajectoryConfig), ("knowledge", KnowledgeConfig)):
                if data.get(key) is not None:
                    value = dict(data[key])
                    if key == "knowledge" and "models" in value:
                        value["models"] = tuple(value["models"])
                    kw[key] = _build(sub, value, key)
            if data.get("comparisons"):
                pairs = []
                for pair in data["comparisons"]:
                    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                        raise UserError(f"comparisons: expected pairs [model_a, model_b], got {pair!r}")
                    pairs.append((str(pair[0]), str(pair[1])))
                kw["comparisons"] = tuple(pairs)
        except TypeError as exc:
            raise UserError(f"study config: {exc}") from None
        return cls(**kw)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "StudyConfig":
        from first_eval.fileio import read_yaml_mapping

        return cls.from_dict(read_yaml_mapping(path))

    def to_dict(self) -> dict[str, Any]:
        return _strip_none(asdict(self))

    def hash(self) -> str:
        """Content hash of the whole config (16 hex digits)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _build(cls: type, obj: Any, where: str):
    _check_keys(obj, cls, where)
    try:
        return cls(**obj)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None


def _strip_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_strip_none(v) for v in obj]
    return obj


def default_config_path() -> Path:
    """``configs/default.yaml`` beside the package (a source checkout), else the packaged copy."""
    here = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    return here
