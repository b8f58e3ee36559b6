"""``first-train pipeline``: finetune → extract → calibrate → distill students (→ score) from one YAML.

Every stage writes under the pipeline's ``out`` directory and records the content hash of its
inputs and settings in its output; a stage whose output exists for the same inputs is skipped, so
re-running an unchanged pipeline does nothing and changing one student re-trains only that
student. Upstream outputs are part of a stage's inputs (through their recorded hashes), so a
re-trained teacher invalidates its store, calibration and students.

===============  ========================================  =====================================
stage            output                                    skipped when
===============  ========================================  =====================================
finetune         ``out/teacher/`` (HF model dir)           ``first_train.json`` has the run hash
extract          ``out/store/`` (top-k store)              ``first_extract.json`` has the hash
calibrate        the store's manifest ``calibration``      ``first_calibrate.json`` has the hash
distill          ``out/students/<name>/``                  ``first_train.json`` has the run hash
evaluate         ``out/eval/predictions.jsonl`` + metrics  ``out/eval/first_eval.json`` has it
===============  ========================================  =====================================

See ``configs/pipeline_default.yaml`` for the layout of the YAML file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from first_eval.errors import UserError
from first_train.config import (
    CalibrateConfig,
    DistillConfig,
    ExtractConfig,
    FinetuneConfig,
    StageConfig,
    TEMPLATES,
)

__all__ = ["PipelineConfig", "StudentSpec", "load_pipeline_config", "run_pipeline"]

_TOP_KEYS = ("out", "seed", "dataset", "template", "teacher", "extract", "calibrate", "students", "evaluate")


@dataclass(frozen=True)
class StudentSpec:
    """One student of the pipeline: a name and its ``distill`` settings."""

    name: str
    config: DistillConfig


@dataclass(frozen=True)
class EvaluateSpec:
    """Which models are scored on which datasets after training (optional stage)."""

    datasets: tuple[dict[str, Any], ...] = ()
    models: tuple[str, ...] | None = None
    batch_size: int = 16


@dataclass(frozen=True)
class PipelineConfig:
    """A whole pipeline, validated; built by :func:`load_pipeline_config`."""

    out: Path
    base_model: str
    finetune: FinetuneConfig | None
    extract: ExtractConfig
    calibrate: CalibrateConfig
    students: tuple[StudentSpec, ...]
    evaluate: EvaluateSpec | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def teacher_spec(self) -> str:
        return self.finetune.out if self.finetune is not None else self.base_model


def _section(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: {key!r} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _build(cls: type[StageConfig], values: dict[str, Any], where: str) -> Any:
    return cls.from_dict(values, where=where)


def load_pipeline_config(source: str | Path | dict[str, Any], *, out: str | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML file (or an already parsed mapping).

    Shared keys (``seed``, ``dataset``, ``template``) fill every stage that does not set them;
    paths between stages (teacher → store → students) are filled in by the pipeline.
    """
    where = "pipeline config"
    if isinstance(source, dict):
        data = dict(source)
    else:
        from first_eval.fileio import read_yaml_mapping

        where = str(Path(source))
        data = read_yaml_mapping(source)
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_TOP_KEYS)})")
    root = Path(out or data.get("out") or "runs/pipeline")
    seed = int(data.get("seed", 0))
    dataset = data.get("dataset") or "countries"
    template = data.get("template") or "plain"
    if template not in TEMPLATES:
        raise UserError(f"{where}: template must be one of {', '.join(TEMPLATES)}, got {template!r}")
    shared = {"seed": seed, "dataset": dataset, "template": template}

    teacher = _section(data, "teacher", where)
    base_model = teacher.pop("model", None)
    if not base_model:
        raise UserError(f"{where}: teacher.model is required (e.g. smollm2-135m)")
    ft_values = teacher.pop("finetune", {})
    if teacher:
        raise UserError(f"{where}: unknown key {sorted(teacher)[0]!r} in teacher (known: model, finetune)")
    finetune = None
    if ft_values is not None:
        finetune = _build(FinetuneConfig, {**shared, **dict(ft_values), "model": base_model,
                                           "out": str(root / "teacher"), "overwrite": True},
                          f"{where}: teacher.finetune")
    teacher_spec = finetune.out if finetune is not None else base_model

    ex_values = {**shared, **_section(data, "extract", where)}
    extract = _build(ExtractConfig, {**ex_values, "seed": seed, "teacher": teacher_spec,
                                     "out": str(root / "store"), "overwrite": True}, f"{where}: extract")
    cal_values = {k: v for k, v in {**shared, **_section(data, "calibrate", where)}.items() if k != "seed"}
    calibrate = _build(CalibrateConfig, {**cal_values, "store": extract.out, "teacher": teacher_spec},
                       f"{where}: calibrate")

    students = []
    names = set()
    for i, entry in enumerate(data.get("students") or []):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise UserError(f"{where}: students[{i}] needs a name")
        entry = dict(entry)
        name = str(entry.pop("name"))
        if name in names or name in ("base", "teacher"):
            raise UserError(f"{where}: student name {name!r} is used twice or reserved")
        names.add(name)
        values = {"seed": seed, **entry, "store": extract.out, "out": str(root / "students" / name),
                  "overwrite": True}
        students.append(StudentSpec(name, _build(DistillConfig, values, f"{where}: students[{i}] ({name})")))

    evaluate = None
    if data.get("evaluate") is not None:
        ev = _section(data, "evaluate", where)
        unknown = sorted(set(ev) - {"datasets", "models", "batch_size"})
        if unknown:
            raise UserError(f"{where}: unknown key {unknown[0]!r} in evaluate (known: datasets, models, batch_size)")
        datasets = tuple(d if isinstance(d, dict) else {"name": str(d)} for d in ev.get("datasets") or
                         [{"name": dataset, "split": "test"}])
        models = tuple(ev["models"]) if ev.get("models") else None
        known = {"base", "teacher", *names}
        for m in models or ():
            if m not in known:
                raise UserError(f"{where}: evaluate.models: unknown model {m!r} (known: {', '.join(sorted(known))})")
        evaluate = EvaluateSpec(datasets=datasets, models=models, batch_size=int(ev.get("batch_size", 16)))
    return PipelineConfig(out=root, base_model=base_model, finetune=finetune, extract=extract,
                          calibrate=calibrate, students=tuple(students), evaluate=evaluate, raw=data)


# ------------------------------------------------------------------------------- stages


def _log(message: str) -> None:
    import os
    import sys

    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[pipeline] {message}", file=sys.stderr, flush=True)


def _calibrate_stage(cfg: CalibrateConfig) -> dict[str, Any]:
    """Calibrate unless the store already holds a calibration fitted with the same inputs."""
    from first_eval.fileio import write_json_atomic
    from first_train.calibrate import run_calibrate
    from first_eval.digest import code_version, content_hash, model_digest

    store = Path(cfg.store)
    manifest = json.loads((store / "manifest.json").read_text())
    identity = {k: v for k, v in manifest.items() if k not in ("calibration", "created_by")}
    inputs_hash = content_hash({"stage": "calibrate", "code": code_version("calibrate"), "store": identity,
                                "teacher": model_digest(cfg.teacher),
                                "config": cfg.hashed_dict()})
    marker = store / "first_calibrate.json"
    if marker.is_file() and manifest.get("calibration"):
        old = json.loads(marker.read_text())
        if old.get("inputs_hash") == inputs_hash and old.get("chosen") == manifest["calibration"]:
            return {**old, "skipped": True}
    result = run_calibrate(cfg)
    write_json_atomic(marker, {"inputs_hash": inputs_hash, **result})
    return {**result, "skipped": False}


def run_pipeline(config: PipelineConfig, *, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run every stage whose output is missing or stale; return a summary of what each did.

    ``only`` restricts the students trained (by name); upstream stages run as needed.
    """
    from first_train.distill import run_distill
    from first_train.extract import run_extract
    from first_train.finetune import run_finetune

    started = time.perf_counter()
    summary: dict[str, Any] = {"out": str(config.out), "stages": {}}
    config.out.mkdir(parents=True, exist_ok=True)

    def timed(name: str, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        skipped = getattr(result, "skipped", None)
        if skipped is None and isinstance(result, dict):
            skipped = result.get("skipped", False)
        elapsed = time.perf_counter() - t0
        _log(f"{name}: {'up to date (skipped)' if skipped else f'done in {elapsed:.1f} s'}")
        return result, bool(skipped), elapsed

    if config.finetune is not None:
        result, skipped, secs = timed("finetune teacher", run_finetune, config.finetune)
        summary["stages"]["finetune"] = {"out": str(result.out), "skipped": skipped, "seconds": secs,
                                         "steps": result.steps, "final_loss": _tail_mean(result.losses)}
    result, skipped, secs = timed("extract", run_extract, config.extract)
    summary["stages"]["extract"] = {"out": str(result.out), "skipped": skipped, "seconds": secs,
                                    "n_positions": result.n_positions,
                                    "positions_per_second": None if skipped else result.positions_per_second}
    result, skipped, secs = timed("calibrate", _calibrate_stage, config.calibrate)
    summary["stages"]["calibrate"] = {"skipped": skipped, "seconds": secs, "chosen": result["chosen"],
                                      "fits": result["fits"], "coverage": result["coverage"]}
    students = [s for s in config.students if not only or s.name in only]
    unknown = set(only) - {s.name for s in config.students}
    if unknown:
        raise UserError(f"--only: no student named {sorted(unknown)[0]!r}")
    for student in students:
        result, skipped, secs = timed(f"distill {student.name} ({student.config.loss})", run_distill, student.config)
        summary["stages"][f"distill:{student.name}"] = {"out": str(result.out), "skipped": skipped, "seconds": secs,
                                                        "steps": result.steps, "final_loss": _tail_mean(result.losses)}
    if config.evaluate is not None:
        from first_train.evaluate import run_evaluation

        models = {"base": config.base_model, "teacher": config.teacher_spec,
                  **{s.name: s.config.out for s in config.students}}
        chosen = config.evaluate.models or tuple(models)
        result, skipped, secs = timed("evaluate", run_evaluation, {m: models[m] for m in chosen},
                                      config.evaluate, config.extract.template, config.out / "eval")
        summary["stages"]["evaluate"] = {"skipped": skipped, "seconds": secs, "results": result["results"]}
    summary["seconds"] = time.perf_counter() - started
    return summary


def _tail_mean(losses: tuple[float, ...] | list[float], n: int = 10) -> float | None:
    tail = list(losses)[-n:]
    return sum(tail) / len(tail) if tail else None
