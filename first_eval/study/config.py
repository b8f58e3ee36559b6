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
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from first_eval.errors import UserError

ROLES = ("in-domain", "near-ood", "far-ood", "validation")
#: How a fine-tuned model's checkpoint is chosen (``select``): the last one, the one with the
#: highest validation accuracy (what a practitioner ships), or the lowest validation ECE (early
#: stopping for calibration). Ties: the earliest step.
SELECT = ("last", "val-accuracy", "val-ece")
LOSSES = ("first", "first-authors", "topk", "topk-rest", "rs-kd", "full-kd", "ce")
TOPK_LOSSES = ("first", "first-authors", "topk", "topk-rest")
#: Post-hoc calibrators by name: the keys of :data:`first_eval.calibrators.CALIBRATORS` (a test keeps
#: them equal; listed here so that reading a config does not import SciPy). bbq, beta and logistic
#: need the netcal extra; dirichlet can change the prediction.
POSTHOC = ("temperature", "histogram", "isotonic", "bbq", "enir", "beta", "logistic", "dirichlet")
NETCAL_POSTHOC = ("bbq", "beta", "logistic")
SCHEDULES = ("linear", "cosine", "constant")


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
    role: str = field(default="in-domain", metadata={
        "help": "in-domain, near-ood, far-ood, or validation (fitting and selection only: never a verdict)."})
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
    schedule: str = field(default="linear", metadata={"help": "Learning-rate schedule after warm-up: linear, cosine or constant."})
    save_every: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: only at the end)."})
    limit: int | None = field(default=None, metadata={"help": "Use at most N training items."})
    train_top_layers: int | None = field(default=None, metadata={
        "help": "Train only the last N decoder layers (the frozen rest is computed once per item)."})
    select: str = field(default="last", metadata={
        "help": f"Which checkpoint is the model: {', '.join(SELECT)} (val-*: on the study's validation set)."})

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserError(f"finetune recipe for {self.model!r}: schedule must be one of {', '.join(SCHEDULES)}, "
                            f"got {self.schedule!r}")
        if self.select not in SELECT:
            raise UserError(f"finetune recipe for {self.model!r}: select must be one of {', '.join(SELECT)}, "
                            f"got {self.select!r}")
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
    schedule: str = field(default="linear", metadata={"help": "Learning-rate schedule after warm-up: linear, cosine or constant."})
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
        if self.schedule not in SCHEDULES:
            raise UserError(f"distill recipe: schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
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
    fit: str = field(default="val", metadata={
        "help": "val: fitted on the model's predictions on the study's validation set and applied unchanged to "
                "every dataset (a deployable baseline); cross: cross-fitted on each dataset's own labels (an oracle)."})
    folds: int = field(default=5, metadata={"help": "Cross-fitting folds (fit: cross)."})

    def __post_init__(self) -> None:
        if self.fit not in ("val", "cross"):
            raise UserError(f"posthoc: fit must be val or cross, got {self.fit!r}")
        if self.method not in POSTHOC:
            raise UserError(f"posthoc: method must be one of {', '.join(POSTHOC)}, got {self.method!r}")
        if self.method in NETCAL_POSTHOC:
            import importlib.util

            if importlib.util.find_spec("netcal") is None:  # say so now, not hours into the study
                raise UserError(f"posthoc: method {self.method!r} needs netcal: pip install 'first-toolkit[netcal]'")
        if self.folds < 2:
            raise UserError(f"posthoc: folds must be ≥ 2, got {self.folds}")


@dataclass(frozen=True)
class ModelConfig:
    """One model of a study. ``seeds`` trains (and scores) one replica per seed, named
    ``<name>@<seed>``: an *arm*, whose metrics combine seed and item variance
    (:mod:`first_eval.arms`). ``template`` scores this model with another prompt template than
    the study's (a spec model only: a reference read as its makers prompt it)."""

    name: str
    spec: str | None = None
    finetune: FinetuneRecipe | None = None
    distill: DistillRecipe | None = None
    posthoc: PosthocRecipe | None = None
    seeds: tuple[int, ...] | None = None
    seed: int | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("spec", "finetune", "distill", "posthoc") if getattr(self, k) is not None]
        if len(given) != 1:
            raise UserError(f"model {self.name!r}: give exactly one of spec, finetune, distill, posthoc "
                            f"(got {', '.join(given) or 'none'})")
        if "@" in self.name and self.seed is None:
            raise UserError(f"model {self.name!r}: '@' is reserved for seed replicas (use `seeds`)")
        if self.seeds is not None:
            if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
                raise UserError(f"model {self.name!r}: seeds must be distinct non-negative integers")
            if self.kind == "spec":
                raise UserError(f"model {self.name!r}: seeds need a finetune, distill or posthoc recipe")
        if self.template is not None and (self.kind != "spec" or self.template not in ("plain", "chat")):
            raise UserError(f"model {self.name!r}: template (plain or chat) is for spec models")

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
    datasets: tuple[str, ...] = field(default=(), metadata={
        "help": "Datasets (by their names in `datasets`) the checkpoints are scored on (default: all)."})


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
            for d in self.trajectory.datasets:
                if d not in dnames:
                    raise UserError(f"trajectory: unknown dataset {d!r}")
        needs_val = [m.name for m in self.models
                     if (m.finetune and m.finetune.select != "last") or (m.posthoc and m.posthoc.fit == "val")]
        if needs_val and self.validation is None:
            raise UserError(f"model {needs_val[0]!r} is fitted or selected on validation data: give a dataset "
                            "with role: validation")
        for m in self.models:
            refs = [m.distill.teacher] if m.distill else []
            refs += [m.finetune.model] if m.finetune and m.finetune.model in known else []
            for ref in refs:
                if self.model(ref).seeds:
                    raise UserError(f"model {m.name!r} starts from {ref!r}, which has several seeds; "
                                    "use a single-seed model")
            if m.posthoc and m.seeds:
                raise UserError(f"model {m.name!r}: a posthoc model has the seeds of the model it recalibrates")
        if self.knowledge:
            for ref in self.knowledge.models:
                if ref not in known:
                    raise UserError(f"knowledge: unknown model {ref!r}")

    def model(self, name: str) -> ModelConfig:
        """The model named ``name``; a replica name ``arm@seed`` gives its arm's config."""
        found = next((m for m in self.models if m.name == name), None)
        if found is None and "@" in name:
            found = next((m for m in self.models if m.name == name.rsplit("@", 1)[0]), None)
        if found is None:
            raise KeyError(name)
        return found

    @property
    def validation(self) -> DatasetConfig | None:
        """The dataset fits and selections are made on (role ``validation``), if any."""
        return next((d for d in self.datasets if d.role == "validation"), None)

    def seeds_of(self, name: str) -> tuple[int, ...] | None:
        """The seeds of an arm (a posthoc model has its source's), None for a single model."""
        m = self.model(name)
        return self.seeds_of(m.posthoc.model) if m.posthoc else m.seeds

    def replicas(self, name: str) -> list[str]:
        """The model names an arm is scored under: ``name@seed`` per seed, else ``[name]``."""
        seeds = self.seeds_of(name)
        return [f"{name}@{s}" for s in seeds] if seeds else [name]

    def expanded_models(self) -> tuple[ModelConfig, ...]:
        """The models as built: an arm's replicas ``name@seed`` (each with its ``seed``; a posthoc
        arm recalibrates the replica of the same seed), every other model as it is."""
        out = []
        for m in self.models:
            seeds = self.seeds_of(m.name)
            if not seeds:
                out.append(m)
                continue
            for s in seeds:
                posthoc = replace(m.posthoc, model=f"{m.posthoc.model}@{s}") if m.posthoc else None
                out.append(replace(m, name=f"{m.name}@{s}", seeds=None, seed=s, posthoc=posthoc))
        return tuple(out)

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
                if "seed" in m:
                    raise UserError(f"models[{i}]: unknown key 'seed' (give `seeds: [0, 1, 2]`)")
                if m.get("seeds") is not None:
                    if not isinstance(m["seeds"], (list, tuple)) or not all(isinstance(x, int) for x in m["seeds"]):
                        raise UserError(f"models[{i}]: seeds must be a list of integers, got {m['seeds']!r}")
                    m["seeds"] = tuple(m["seeds"])
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
                    if key == "trajectory":
                        if "dataset" in value:  # v1 configs: one dataset
                            value["datasets"] = [value.pop("dataset")]
                        value["datasets"] = tuple(value.get("datasets") or ())
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
