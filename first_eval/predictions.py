"""The predictions table — the one record everything downstream reads.

One row per (model, dataset, item), stored as JSONL or Parquet (DESIGN.md, "The spine"):

=============== ============== ==========================================================
column          type           meaning
=============== ============== ==========================================================
``model``       str            model name
``dataset``     str            dataset name
``id``          str            item id, unique within (model, dataset)
``probs``       list[float]    probabilities over the options, summing to 1
``label``       int            0-based index of the right option
``prompt``      str, optional  the exact prompt the model saw
``option_mass`` float, opt.    full-vocabulary probability on the option letters
``top1_correct``bool, opt.     whether the full-vocabulary top-1 token is the gold letter
``subject``     str, optional  subject or field of the item
``split``       str, optional  dataset split
``n_options``   int, optional  number of options (defaults to ``len(probs)``)
=============== ============== ==========================================================

Any tool (vLLM, an API, lm-eval) can write it; :func:`read_predictions` validates it once, at
the door, and raises :class:`~first_eval.errors.UserError` with the file and line (JSONL) or
row (Parquet) of the first problem. Probabilities must be finite, non-negative and sum to 1
within ``1e-6`` (:data:`~first_eval.calibration.SUM_TOLERANCE`, the metrics' own rule); they
are renormalized only when the caller asks (``renormalize=True``).

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from first_eval.calibration._checks import SUM_TOLERANCE
from first_eval.errors import UserError
from first_eval.fileio import atomic_path, json_lines

REQUIRED_COLUMNS = ("model", "dataset", "id", "probs", "label")
OPTIONAL_COLUMNS = ("prompt", "option_mass", "top1_correct", "subject", "split", "n_options")
MAX_OPTIONS = 10


@dataclass(frozen=True)
class PredictionGroup:
    """The predictions of one model on one dataset, as arrays for the metrics.

    Attributes
    ----------
    model, dataset : str
    ids : ndarray of shape (n_items,), dtype object (str)
    probs : ndarray of shape (n_items, max_options)
        Option probabilities; items with fewer options are zero-padded on the right.
    labels : ndarray of shape (n_items,), dtype int64
    n_options : ndarray of shape (n_items,), dtype int64
    frame : DataFrame
        The rows of this group (all columns), in file order.
    """

    model: str
    dataset: str
    ids: np.ndarray
    probs: np.ndarray
    labels: np.ndarray
    n_options: np.ndarray
    frame: pd.DataFrame

    @property
    def n(self) -> int:
        return len(self.labels)


def _where(source: str, line: int | None, kind: str) -> str:
    return f"{source}:{line}" if kind == "line" else f"{source} row {line}"


def _parse_jsonl(path: Path) -> tuple[list[dict], list[int]]:
    rows: list[dict] = []
    lines: list[int] = []
    for lineno, obj in json_lines(path):
        rows.append(obj)
        lines.append(lineno)
    return rows, lines


def _check_row(row: Mapping, where: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS
               if c not in row or row[c] is None or (isinstance(row[c], float) and math.isnan(row[c]))]
    if missing:
        raise UserError(f"{where}: missing field {', '.join(repr(m) for m in missing)}")
    for col in ("model", "dataset"):
        if not isinstance(row[col], str) or not row[col]:
            raise UserError(f"{where}: expected '{col}' to be a non-empty string, got {row[col]!r}")
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        raise UserError(f"{where}: expected 'id' to be a string, got {row['id']!r}")
    probs = row["probs"]
    if isinstance(probs, np.ndarray):
        probs = probs.tolist()
    if not isinstance(probs, list) or not all(
        isinstance(p, (int, float)) and not isinstance(p, bool) for p in probs
    ):
        raise UserError(f"{where}: expected 'probs' to be a list of numbers, got {_short(probs)}")
    if not 2 <= len(probs) <= MAX_OPTIONS:
        raise UserError(f"{where}: expected 2 to {MAX_OPTIONS} probabilities, got {len(probs)}")
    label = row["label"]
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        label = int(label)
    if not isinstance(label, (int, np.integer)) or isinstance(label, bool):
        raise UserError(f"{where}: expected 'label' to be an integer, got {label!r}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def ragged_matrix(column: Iterable) -> tuple[np.ndarray, np.ndarray] | None:
    """Zero-padded (n, max_len) float64 matrix and lengths from a column of number lists.

    Returns None when some element is not a list/array of plain numbers (the caller then finds
    and names the first bad row).
    """
    values = list(column)
    try:
        lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    except TypeError:
        return None
    if len(values) == 0:
        return np.zeros((0, 0)), lengths
    if all(isinstance(v, np.ndarray) for v in values):
        flat = np.concatenate(values) if lengths.sum() else np.zeros(0)
    else:
        items = list(itertools.chain.from_iterable(values))
        if any(type(x) is bool for x in items):
            return None
        flat = np.asarray(items)
    if flat.dtype.kind not in "fiu":
        return None
    width = int(lengths.max()) if len(lengths) else 0
    matrix = np.zeros((len(values), width), dtype=np.float64)
    rows = np.repeat(np.arange(len(values)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    matrix[rows, cols] = flat
    return matrix, lengths


def _fast_columns_ok(frame: pd.DataFrame) -> bool:
    """Vectorized version of the per-row type checks (True when every row passes them)."""
    infer = pd.api.types.infer_dtype
    for col in ("model", "dataset"):
        if infer(frame[col], skipna=False) != "string" or not (frame[col].str.len() > 0).all():
            return False
    if infer(frame["id"], skipna=False) not in ("string", "integer"):
        return False
    labels = frame["label"]
    if labels.dtype.kind == "f":
        if not (np.isfinite(labels).all() and (labels == np.floor(labels)).all()):
            return False
    elif labels.dtype.kind not in "iu":
        return labels.map(lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)).all()
    return True


def validate_frame(
    frame: pd.DataFrame,
    *,
    source: str = "<predictions>",
    locations: list[int] | None = None,
    location_kind: str = "row",
    renormalize: bool = False,
) -> pd.DataFrame:
    """Validate a predictions frame and return a normalized copy.

    Parameters
    ----------
    frame : DataFrame
        One row per (model, dataset, item) with at least :data:`REQUIRED_COLUMNS`.
    source : str, default="<predictions>"
        Name used in error messages (usually the file path).
    locations : list of int, optional
        Line (JSONL) or row numbers of each row, for error messages; default 1..n.
    location_kind : {"row", "line"}, default="row"
    renormalize : bool, default=False
        Divide each ``probs`` row by its sum instead of rejecting sums off 1 by more than 1e-6.

    Returns
    -------
    DataFrame
        With ``id`` as str, ``label`` and ``n_options`` as int64, ``probs`` as lists of float.

    Raises
    ------
    UserError
        On the first problem, naming its line or row.
    """
    if len(frame) == 0:
        raise UserError(f"{source}: no predictions (the file is empty)")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{source}: missing field {', '.join(repr(m) for m in missing)}")
    locs = locations if locations is not None else list(range(1, len(frame) + 1))
    has_null = frame[["model", "dataset", "id", "label"]].isna().to_numpy().any(axis=1)
    packed = None if has_null.any() else ragged_matrix(frame["probs"])
    if packed is None or not _fast_columns_ok(frame) or not (2 <= packed[1]).all() \
            or not (packed[1] <= MAX_OPTIONS).all():
        # Slow path: find and name the first bad row.
        for row, loc in zip(frame.to_dict("records"), locs):
            _check_row(row, _where(source, loc, location_kind))
        packed = ragged_matrix(frame["probs"].map(lambda v: [float(x) for x in v]))
    matrix, lengths = packed
    labels = frame["label"].to_numpy().astype(np.int64)

    def fail(mask: np.ndarray, message) -> None:
        first = int(np.flatnonzero(mask)[0])
        text = message(first) if callable(message) else message
        raise UserError(f"{_where(source, locs[first], location_kind)}: {text}")

    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        fail(~finite, "probabilities must be finite numbers (found NaN or infinity)")
    negative = (matrix < 0).any(axis=1)
    if negative.any():
        fail(negative, "probabilities must be non-negative")
    sums = matrix.sum(axis=1)
    if (sums <= 0).any():
        fail(sums <= 0, "probabilities sum to 0")
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        if not renormalize:
            fail(off, lambda i: f"probabilities sum to {sums[i]:.9g}, not 1 within {SUM_TOLERANCE:g} "
                 "(pass --renormalize to divide by the sum)")
        matrix = matrix / sums[:, None]
    bad_label = (labels < 0) | (labels >= lengths)
    if bad_label.any():
        fail(bad_label, lambda i: f"label {labels[i]} out of range for {lengths[i]} options")

    out = frame.copy()
    out["id"] = frame["id"].astype(str)
    out["label"] = labels
    flat_rows = matrix.tolist()
    out["probs"] = [r[:n] for r, n in zip(flat_rows, lengths.tolist())]
    if "n_options" in out.columns:
        given = pd.to_numeric(out["n_options"], errors="coerce")
        given = given.where(given.notna(), pd.Series(lengths, index=out.index))
        mismatch = given.to_numpy() != lengths
        if mismatch.any():
            fail(mismatch, lambda i: f"n_options {given.iloc[i]} does not match {lengths[i]} probabilities")
    out["n_options"] = lengths
    dup = out.duplicated(subset=["model", "dataset", "id"], keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        fail(dup, f"duplicate item (model={out['model'].iloc[i]!r}, dataset={out['dataset'].iloc[i]!r}, "
             f"id={out['id'].iloc[i]!r})")
    return out.reset_index(drop=True)


def read_predictions(path: str | os.PathLike, *, renormalize: bool = False) -> pd.DataFrame:
    """Read and validate a predictions table from ``.jsonl`` or ``.parquet``.

    Parameters
    ----------
    path : str or path-like
        A ``.jsonl`` (one JSON object a line) or ``.parquet`` file.
    renormalize : bool, default=False
        Renormalize probability rows that do not sum to 1 within 1e-6 instead of rejecting them.

    Returns
    -------
    DataFrame
        The validated rows (see :func:`validate_frame`).

    Raises
    ------
    UserError
        For a missing, empty or malformed file — one line that names the file and line or row.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory; expected a .jsonl or .parquet predictions file")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows, lines = _parse_jsonl(p)
        if not rows:
            raise UserError(f"{p}: no predictions (the file is empty)")
        frame = pd.DataFrame.from_records(rows)
        return validate_frame(frame, source=str(p), locations=lines, location_kind="line",
                              renormalize=renormalize)
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises many types for a corrupt file
            raise UserError(f"{p}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
        return validate_frame(frame, source=str(p), renormalize=renormalize)
    raise UserError(f"{p}: unknown predictions format {suffix!r}; expected .jsonl or .parquet")


def to_frame(rows: pd.DataFrame | Iterable[Mapping]) -> pd.DataFrame:
    """Build a predictions frame from row mappings (or pass a frame through), columns in spec order."""
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    ordered = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    extra = [c for c in frame.columns if c not in ordered]
    return frame[ordered + extra]


def write_predictions(rows: pd.DataFrame | Iterable[Mapping], path: str | os.PathLike) -> Path:
    """Validate and write a predictions table atomically (``.jsonl`` or ``.parquet`` by suffix).

    Returns the path written. The file appears whole or not at all.
    """
    p = Path(path)
    frame = validate_frame(to_frame(rows), source=str(p))
    suffix = p.suffix.lower()
    with atomic_path(p) as tmp:
        if suffix in (".jsonl", ".json", ".ndjson"):
            with open(tmp, "w", encoding="utf-8") as fh:
                for rec in frame.to_dict("records"):
                    fh.write(json.dumps(_jsonable(rec), ensure_ascii=False) + "\n")
        elif suffix in (".parquet", ".pq"):
            frame.to_parquet(tmp, index=False)
        else:
            raise UserError(f"{p}: unknown predictions format {suffix!r}; expected .jsonl or .parquet")
    return p


def _jsonable(rec: Mapping) -> dict:
    out = {}
    for key, value in rec.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, float) and math.isnan(value):
            continue  # an absent optional value
        out[key] = value
    return out


def group_predictions(frame: pd.DataFrame) -> Iterator[PredictionGroup]:
    """Yield one :class:`PredictionGroup` per (model, dataset), in order of first appearance."""
    for (model, dataset), sub in frame.groupby(["model", "dataset"], sort=False):
        matrix, n_opts = ragged_matrix(sub["probs"])
        yield PredictionGroup(
            model=str(model),
            dataset=str(dataset),
            ids=sub["id"].astype(str).to_numpy(dtype=object),
            probs=matrix,
            labels=sub["label"].to_numpy(dtype=np.int64),
            n_options=n_opts,
            frame=sub.reset_index(drop=True),
        )


def align_groups(a: PredictionGroup, b: PredictionGroup) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Align two models' predictions on the item ids they share (for paired comparisons).

    Returns
    -------
    probs_a, probs_b : ndarray of shape (n_shared, max_options)
    labels : ndarray of shape (n_shared,)
    n_options : ndarray of shape (n_shared,)

    Raises
    ------
    UserError
        If they share no items, or a shared item has a different label.
    """
    pos_b = {item: i for i, item in enumerate(b.ids)}
    ia = np.array([i for i, item in enumerate(a.ids) if item in pos_b], dtype=np.int64)
    if len(ia) == 0:
        raise UserError(f"models {a.model!r} and {b.model!r} share no item ids on dataset {a.dataset!r}")
    ib = np.array([pos_b[a.ids[i]] for i in ia], dtype=np.int64)
    if not np.array_equal(a.labels[ia], b.labels[ib]):
        k = int(np.flatnonzero(a.labels[ia] != b.labels[ib])[0])
        raise UserError(f"item {a.ids[ia[k]]!r} has label {a.labels[ia[k]]} for {a.model!r} but "
                        f"{b.labels[ib[k]]} for {b.model!r} on dataset {a.dataset!r}")
    width = max(a.probs.shape[1], b.probs.shape[1])
    pa = np.zeros((len(ia), width))
    pb = np.zeros((len(ia), width))
    pa[:, : a.probs.shape[1]] = a.probs[ia]
    pb[:, : b.probs.shape[1]] = b.probs[ib]
    return pa, pb, a.labels[ia], a.n_options[ia]
