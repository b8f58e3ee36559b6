"""The run directory — what ``first-eval run`` writes and the report and dashboard read.

Layout (``format_version`` 1)::

    DIR/
      run.json             study name, created, format_version, config + config_hash, seeds,
                           package versions, models [{name, spec, kind}], datasets [{name, role, n}]
      metrics.json         {"results": [...], "comparisons": [...], "metadata": {...}} —
                           results in the ``first-eval metrics --json`` schema
      predictions.parquet  the predictions table (all models × datasets)
      trajectory.json      [{"model", "step", "dataset", "accuracy", "ece", ...}] — ECE across
                           fine-tuning checkpoints (optional)
      knowledge.json       the concentrated-knowledge study (optional; see first_eval.knowledge)
      calibration.json     [{"model", "method", "temperature", "ece_before", "ece_after",
                           "grid": [[c, ece], ...]}] — the temperature grid(s) (optional)
      report.md, index.html

Every file is written atomically. Readers accept a directory that lacks the optional files and
raise :class:`~first_eval.errors.UserError` with one clear line for a corrupt one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from first_eval.errors import UserError
from first_eval.fileio import write_json_atomic

FORMAT_VERSION = 1
RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.parquet"
TRAJECTORY_FILE = "trajectory.json"
KNOWLEDGE_FILE = "knowledge.json"
CALIBRATION_FILE = "calibration.json"
REPORT_MD = "report.md"
REPORT_HTML = "index.html"


@dataclass(frozen=True)
class Run:
    """Everything in one run directory, read once."""

    path: Path
    info: dict[str, Any]
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    knowledge: dict[str, Any] = field(default_factory=dict)
    calibration: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.metrics.get("results", [])

    def roles(self) -> dict[str, str]:
        """Dataset name → role (``in-domain``, ``near-ood``, ``far-ood``)."""
        return {d["name"]: d.get("role", "") for d in self.info.get("datasets", [])}


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a run directory (has ``run.json``)."""
    return (Path(path) / RUN_FILE).is_file()


def _read_json(path: Path, *, required: bool, default: Any) -> Any:
    if not path.exists():
        if required:
            raise UserError(f"{path}: missing; is {path.parent} a run directory written by `first-eval run`?")
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def load_run(path: str | os.PathLike) -> Run:
    """Read a run directory, validating its version and its predictions table."""
    from first_eval.predictions import read_predictions

    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory")
    info = _read_json(root / RUN_FILE, required=True, default={})
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(f"{root}: run format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    return Run(
        path=root,
        info=info,
        metrics=_read_json(root / METRICS_FILE, required=True, default={}),
        predictions=read_predictions(root / PREDICTIONS_FILE),
        trajectory=_read_json(root / TRAJECTORY_FILE, required=False, default=[]),
        knowledge=_read_json(root / KNOWLEDGE_FILE, required=False, default={}),
        calibration=_read_json(root / CALIBRATION_FILE, required=False, default=[]),
    )


def write_run_json(root: str | os.PathLike, info: dict[str, Any]) -> None:
    write_json_atomic(Path(root) / RUN_FILE, {"format_version": FORMAT_VERSION, **info})


def find_runs(reports_dir: str | os.PathLike) -> list[Path]:
    """Run directories directly under ``reports_dir``, newest first (by name, then mtime)."""
    base = Path(reports_dir)
    if not base.is_dir():
        return []
    runs = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and is_run_dir(p)]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
