"""Finding and reading run directories for the dashboard — only under its reports directory.

Safety: the dashboard is pointed at one reports directory (``--reports DIR``): a folder of run
directories, or one run directory itself (it holds ``run.json``; then the dashboard shows that run
alone and the run directory is the reports directory — the narrowest root, so not even a sibling
run in its parent is read). A run is listed only if its resolved path lies inside the resolved
reports directory, and before a run is read, every file the reader opens is resolved and must lie
inside it too — so a symlinked run or a ``predictions.parquet`` that points elsewhere is refused
with a message instead of being read. Run names come from the listing, never from user-typed paths.

Caching: ``st.cache_data`` everywhere. The whole run is parsed once per (path, file stamps)
and cut into small cached pieces (a summary, one array group per model × dataset, one item
table per dataset), so a rerun unpickles only what the current view needs. A run that fails to
load is cached as its error message: one error per corrupt run, not a re-read on every rerun.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from first_eval import rundir
from first_eval.errors import UserError

REPORTS_ENV = "FIRST_REPORTS_DIR"
DEFAULT_REPORTS = "reports"
RUN_FILES = (rundir.RUN_FILE, rundir.METRICS_FILE, rundir.PREDICTIONS_FILE, rundir.TRAJECTORY_FILE,
             rundir.KNOWLEDGE_FILE, rundir.CALIBRATION_FILE)
ITEM_COLUMNS = ("subject", "prompt", "split")


def reports_dir(argv: list[str] | None = None) -> Path:
    """The reports directory: ``--reports DIR`` after ``--`` on the streamlit command line, else
    ``$FIRST_REPORTS_DIR``, else ``reports/`` (relative to the working directory). ``DIR`` is a
    folder of run directories or one run directory."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--reports", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return Path(args.reports or os.environ.get(REPORTS_ENV) or DEFAULT_REPORTS)


# --------------------------------------------------------------------------- discovery and safety
@dataclass(frozen=True)
class RunRef:
    """A run directory found under the reports directory (or the reports directory itself)."""

    name: str
    path: str  # resolved
    root: str  # the resolved reports directory (== path when --reports named this run)
    stamp: tuple  # (file, size, mtime_ns) of its files: a rewritten run is a new cache key

    @property
    def key(self) -> tuple:
        return (self.path, self.root, self.stamp)


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def check_inside(run_path: Path, root: Path) -> None:
    """Raise UserError unless the run directory and each run file it holds resolve inside ``root``.

    ``root`` is the resolved reports directory. When it is itself a run directory, that run is the
    only one that may be read; otherwise a run must lie strictly below it.
    """
    real = run_path.resolve()
    if not _inside(real, root) or (real == root) != rundir.is_run_dir(root):
        raise UserError(f"{run_path.name}: resolves to {real}, outside the reports directory {root}; not read")
    for name in RUN_FILES:
        f = run_path / name
        if os.path.lexists(f):
            target = f.resolve()
            if not _inside(target, root):
                raise UserError(f"{run_path.name}/{name}: resolves to {target}, outside the reports "
                                f"directory {root}; not read")


def _stamp(path: Path) -> tuple:
    out = []
    for name in RUN_FILES:
        try:
            s = (path / name).stat()
            out.append((name, s.st_size, s.st_mtime_ns))
        except OSError:
            out.append((name, -1, 0))
    return tuple(out)


def discover(reports: Path) -> tuple[list[RunRef], list[str]]:
    """Run directories under ``reports`` (newest first) and one message per refused entry.

    If ``reports`` is itself a run directory (it holds ``run.json``), that run alone.
    """
    root = reports.resolve()
    refs: list[RunRef] = []
    refused: list[str] = []
    if not root.is_dir():
        return refs, refused
    for path in [root] if rundir.is_run_dir(root) else rundir.find_runs(root):
        try:
            check_inside(path, root)
        except UserError as exc:
            refused.append(str(exc))
            continue
        refs.append(RunRef(name=path.name, path=str(path.resolve()), root=str(root), stamp=_stamp(path)))
    return refs, refused


# --------------------------------------------------------------------------- cached pieces
@dataclass(frozen=True)
class GroupArrays:
    """One model on one dataset, as arrays (see :class:`first_eval.predictions.PredictionGroup`)."""

    ids: np.ndarray  # (n,), fixed-width str
    probs: np.ndarray  # (n, K), zero-padded
    labels: np.ndarray  # (n,)
    n_options: np.ndarray  # (n,)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def predictions(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels


@dataclass(frozen=True)
class RunSummary:
    """Everything small about a run (no predictions)."""

    name: str
    info: dict
    results: list[dict]
    comparisons: list[dict]
    metadata: dict
    trajectory: list[dict]
    knowledge: dict
    calibration: list[dict]
    roles: dict[str, str]
    models: list[str]
    datasets: list[str]
    groups: list[tuple[str, str]] = field(default_factory=list)
    n_rows: int = 0

    @property
    def synthetic(self) -> bool:
        return bool(self.info.get("synthetic") or self.metadata.get("synthetic"))


@dataclass(frozen=True)
class LoadedRun:
    summary: RunSummary
    groups: dict[tuple[str, str], GroupArrays]
    items: dict[str, pd.DataFrame]


@dataclass(frozen=True)
class LoadError:
    message: str


def _as_list(value: Any, what: str, path: Path) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserError(f"{path}: expected {what} to be a list, got {type(value).__name__}")
    return value


def _read(ref_path: str, root: str) -> LoadedRun:
    path = Path(ref_path)
    check_inside(path, Path(root))
    run = rundir.load_run(path)
    if not isinstance(run.metrics, dict):
        raise UserError(f"{path / rundir.METRICS_FILE}: expected a JSON object with 'results'")
    metrics = run.metrics
    results = [r for r in _as_list(metrics.get("results"), "'results'", path) if isinstance(r, dict)]
    for r in results:
        if "model" not in r or "dataset" not in r:
            raise UserError(f"{path / rundir.METRICS_FILE}: a result row lacks 'model' or 'dataset'")
    frame = run.predictions
    groups: dict[tuple[str, str], GroupArrays] = {}
    from first_eval.predictions import group_predictions

    for g in group_predictions(frame):
        groups[(g.model, g.dataset)] = GroupArrays(ids=g.ids.astype(str), probs=g.probs,
                                                   labels=g.labels, n_options=g.n_options)
    items: dict[str, pd.DataFrame] = {}
    cols = ["dataset", "id", "label", "n_options"] + [c for c in ITEM_COLUMNS if c in frame.columns]
    for ds, sub in frame[cols].drop_duplicates(subset=["dataset", "id"]).groupby("dataset", sort=False):
        items[str(ds)] = sub.drop(columns="dataset").set_index("id")
    knowledge = run.knowledge if isinstance(run.knowledge, dict) else {}
    info = run.info if isinstance(run.info, dict) else {}
    roles = {d["name"]: d.get("role", "") for d in info.get("datasets", []) if isinstance(d, dict) and "name" in d}
    summary = RunSummary(
        name=path.name, info=info, results=results,
        comparisons=[c for c in _as_list(metrics.get("comparisons"), "'comparisons'", path) if isinstance(c, dict)],
        metadata=metrics.get("metadata") if isinstance(metrics.get("metadata"), dict) else {},
        trajectory=[r for r in _as_list(run.trajectory, "trajectory.json", path) if isinstance(r, dict)],
        knowledge=knowledge,
        calibration=[r for r in _as_list(run.calibration, "calibration.json", path) if isinstance(r, dict)],
        roles=roles,
        models=list(dict.fromkeys(m for m, _ in groups)),
        datasets=list(dict.fromkeys(d for _, d in groups)),
        groups=list(groups), n_rows=len(frame),
    )
    return LoadedRun(summary=summary, groups=groups, items=items)


@st.cache_data(show_spinner="Reading the run…", max_entries=8)
def _load(path: str, root: str, stamp: tuple) -> LoadedRun | LoadError:
    try:
        return _read(path, root)
    except UserError as exc:
        return LoadError(str(exc))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a corrupt file of any other kind
        return LoadError(f"{Path(path).name}: could not be read ({type(exc).__name__}: {exc})")


@st.cache_data(show_spinner=False)
def run_summary(path: str, root: str, stamp: tuple) -> RunSummary | LoadError:
    loaded = _load(path, root, stamp)
    return loaded if isinstance(loaded, LoadError) else loaded.summary


@st.cache_data(show_spinner=False)
def group_arrays(path: str, root: str, stamp: tuple, model: str, dataset: str) -> GroupArrays | None:
    loaded = _load(path, root, stamp)
    return None if isinstance(loaded, LoadError) else loaded.groups.get((model, dataset))


@st.cache_data(show_spinner=False)
def item_table(path: str, root: str, stamp: tuple, dataset: str) -> pd.DataFrame | None:
    loaded = _load(path, root, stamp)
    return None if isinstance(loaded, LoadError) else loaded.items.get(dataset)


# --------------------------------------------------------------------------- the selection
@dataclass
class Source:
    """Where a model label's predictions live."""

    ref: RunRef
    model: str


@dataclass
class Selection:
    """What the sidebar picked, relabelled so several runs can sit side by side."""

    reports: Path
    runs: list[tuple[RunRef, RunSummary]]
    labels: list[str]  # every model label across the selected runs
    models: list[str]  # the selected model labels
    datasets: list[str]  # the selected datasets
    sources: dict[str, Source]
    roles: dict[str, str]
    colors: dict[str, str] = field(default_factory=dict)

    def group(self, label: str, dataset: str) -> GroupArrays | None:
        src = self.sources.get(label)
        return None if src is None else group_arrays(*src.ref.key, src.model, dataset)

    def items(self, label: str, dataset: str) -> pd.DataFrame | None:
        src = self.sources.get(label)
        return None if src is None else item_table(*src.ref.key, dataset)

    def _rows(self, attr: str) -> list[dict]:
        out = []
        for ref, summary in self.runs:
            for row in getattr(summary, attr):
                label = self.label_of(ref, row.get("model", ""))
                if label in self.models:
                    out.append({**row, "model": label, "run": ref.name})
        return out

    def label_of(self, ref: RunRef, model: str) -> str:
        return model if len(self.runs) == 1 else f"{model} [{ref.name}]"

    @property
    def results(self) -> list[dict]:
        return [r for r in self._rows("results") if r["dataset"] in self.datasets]

    @property
    def trajectory(self) -> list[dict]:
        return self._rows("trajectory")

    @property
    def calibration(self) -> list[dict]:
        return self._rows("calibration")

    @property
    def comparisons(self) -> list[dict]:
        out = []
        for ref, summary in self.runs:
            for c in summary.comparisons:
                a, b = self.label_of(ref, c.get("model_a", "")), self.label_of(ref, c.get("model_b", ""))
                out.append({**c, "model_a": a, "model_b": b, "run": ref.name})
        return out

    @property
    def knowledge(self) -> dict:
        models = []
        for ref, summary in self.runs:
            for entry in (summary.knowledge or {}).get("models", []) or []:
                if isinstance(entry, dict):
                    models.append({**entry, "model": self.label_of(ref, entry.get("model", "?"))})
        return {"models": models}

    @property
    def synthetic_runs(self) -> list[str]:
        return [ref.name for ref, s in self.runs if s.synthetic]


def build_selection(reports: Path, chosen: list[tuple[RunRef, RunSummary]]) -> Selection:
    sel = Selection(reports=reports, runs=chosen, labels=[], models=[], datasets=[], sources={}, roles={})
    datasets: list[str] = []
    for ref, summary in chosen:
        for model in summary.models:
            label = sel.label_of(ref, model)
            sel.sources[label] = Source(ref=ref, model=model)
            sel.labels.append(label)
        datasets += summary.datasets
        for ds, role in summary.roles.items():
            sel.roles.setdefault(ds, role)
    sel.datasets = list(dict.fromkeys(datasets))
    return sel
