"""Predictions from lm-evaluation-harness ``--log_samples`` output.

What the harness writes (read from its code, 0.4.2 and 0.4.13; the tests run on files both wrote):

* 0.4.3 and later: ``<output_path>/<model_name_sanitized>/results_<date>.json`` and one
  ``samples_<task>_<date>.jsonl`` per task, one JSON object a line. Every leaf of ``resps`` and
  ``filtered_resps`` is a string (``["-17.89", "False"]``), ``target`` is ``str(doc_to_target)``
  and ``arguments`` is ``{"gen_args_0": {"arg_0": context, "arg_1": continuation}, …}``.
* 0.4.2 and earlier: ``results.json`` and ``<model_args>_<task>.jsonl`` beside it, which holds
  one JSON *array* (indented) of the same records, with numbers and booleans as such, ``target``
  as the raw int or string and ``arguments`` as ``[[context, continuation], …]``.

The reading (one predictions row per ``multiple_choice`` sample of the chosen filter, ``none``
by default — the only filter such tasks have):

* **Log-likelihoods** ``ll_i`` are the first element of each ``filtered_resps`` entry. With
  ``acc_mutual_info`` the harness adds one unconditional request ``("", continuation)`` per choice
  (appended in 0.4.13, interleaved in 0.4.2); those are recognized by their empty context and left
  out.
* **Probabilities**: ``--reading acc`` (default) ``softmax(ll)`` — the distribution behind the
  harness' ``acc`` (its argmax) and ``brier_score`` (which is computed from exactly this softmax);
  ``--reading acc_norm`` ``softmax(ll_i / len(choice_i))`` with ``len`` the choice's character
  length, whose argmax is the harness' ``acc_norm``. The choice text is the continuation less the
  task's ``target_delimiter`` (from the results file; the harness' default ``" "`` otherwise),
  where every continuation starts with it. The reading is recorded in the column ``reading``
  (``lm-eval:acc`` / ``lm-eval:acc_norm``).
* **Label** from ``target``, as the harness' ``process_results`` reads ``doc_to_target``: an int
  is an index, a string is looked up among the choices. Since 0.4.3 writes every target as a
  string, a string of digits is read as an index unless that contradicts the sample's own
  ``acc`` while the choice-text reading agrees with it (a task whose choices are numbers).
* **id**: the doc's own ``id`` (or ``idx``, ``question_id``, ``qid``) when every doc of the task
  has a distinct one, else ``<task>/<doc_id>``; ``dataset`` is the task name, ``model`` the results
  file's ``model_name`` (else the ``pretrained=`` of its ``model_args``), ``prompt`` the context,
  ``subject`` the doc's ``subject`` where it has one.
* **option_mass** ``= Σ exp(ll_i)`` only when every choice is a single letter or digit (the
  lettered-answer layout, one token in the tokenizers we know); absent otherwise, since a
  multi-token continuation's probability is not a next-token mass.

Skipped, with one note line each: tasks that are not ``multiple_choice`` (by the results file's
``output_type``, else by the shape of the samples), tasks whose choices sit in the context
(``multiple_input``, e.g. winogrande: the gold index is not in the samples file), samples with
several gold answers, samples of other filters, and older samples files of a task that a newer
run of the same model wrote again. A malformed line or record raises
:class:`~first_eval.errors.UserError` naming the file and line.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from first_eval.errors import UserError
from first_eval.fileio import json_lines
from first_eval.imports import ImportResult

__all__ = ["HarnessTask", "read_lm_eval", "find_runs", "READINGS"]

READINGS = ("acc", "acc_norm")
ID_FIELDS = ("id", "idx", "question_id", "qid")
_NEW_SAMPLES = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl$")
_NEW_RESULTS = re.compile(r"^results_(?P<date>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.json$")
_SINGLE = re.compile(r"^[A-Za-z0-9]$")


@dataclass
class HarnessRun:
    """One results file (may be absent) and the samples files that belong to it."""

    results_path: Path | None
    results: dict[str, Any]
    samples: dict[str, Path] = field(default_factory=dict)  # task -> samples file
    date: str = ""

    @property
    def model_name(self) -> str | None:
        name = self.results.get("model_name")
        if isinstance(name, str) and name:
            return name
        args = (self.results.get("config") or {}).get("model_args")
        if isinstance(args, str):
            for part in args.split(","):
                key, _, value = part.partition("=")
                if key.strip() == "pretrained" and value:
                    return value.strip().rstrip("/").split("/")[-1] or value
        elif isinstance(args, dict) and isinstance(args.get("pretrained"), str):
            return str(args["pretrained"]).rstrip("/").split("/")[-1]
        return None

    def config(self, task: str) -> dict[str, Any]:
        return (self.results.get("configs") or {}).get(task) or {}

    def harness_metric(self, task: str, metric: str, filter_name: str) -> float | None:
        value = ((self.results.get("results") or {}).get(task) or {}).get(f"{metric},{filter_name}")
        if value is None:
            value = ((self.results.get("results") or {}).get(task) or {}).get(metric)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class HarnessTask:
    """One task's samples as read: what the importer made of them, and the harness' own numbers."""

    task: str
    model: str
    path: Path
    rows: list[dict]
    harness: dict[str, float]  # the results file's acc / acc_norm / brier_score for this filter


# ------------------------------------------------------------------------------ finding files
def _read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None


def _is_results(path: Path) -> bool:
    return path.suffix == ".json" and path.name.startswith("results")  # results.json, results_<date>.json


def _task_of_old(path: Path, tasks: Iterable[str]) -> str | None:
    """The task of an 0.4.2-style ``<model_args>_<task>.jsonl``: the longest known task it ends with."""
    stem = path.stem
    hits = [t for t in tasks if stem == t or stem.endswith("_" + t)]
    return max(hits, key=len) if hits else None


def _runs_in_dir(directory: Path) -> list[HarnessRun]:
    runs: list[HarnessRun] = []
    by_dir: dict[Path, list[Path]] = {}
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".json", ".jsonl")):
                by_dir.setdefault(Path(root), []).append(Path(root) / name)
    for _, files in sorted(by_dir.items()):
        runs += _runs_of_files(files)
    return runs


def _runs_of_files(files: Sequence[Path]) -> list[HarnessRun]:
    """Pair results files with the samples files beside them (same date, or 0.4.2 names)."""
    results = [f for f in files if _is_results(f)]
    samples = [f for f in files if f.suffix == ".jsonl"]
    runs: dict[str, HarnessRun] = {}
    for r in results:
        m = _NEW_RESULTS.match(r.name)
        date = m.group("date") if m else ""
        runs[date] = HarnessRun(r, _read_json_file(r), date=date)
    for s in samples:
        m = _NEW_SAMPLES.match(s.name)
        if m:
            run = runs.setdefault(m.group("date"), HarnessRun(None, {}, date=m.group("date")))
            run.samples[m.group("task")] = s
            continue
        old = runs.get("")
        task = _task_of_old(s, (old.results.get("configs") or {}) if old else ())
        if old is None:
            old = runs.setdefault("", HarnessRun(None, {}))
        old.samples[task or s.stem] = s
    return [runs[k] for k in sorted(runs)]


def find_runs(paths: Sequence[str | os.PathLike]) -> list[HarnessRun]:
    """The harness runs named by ``paths`` (output directories, results files or samples files)."""
    if not paths:
        raise UserError("no lm-eval output given: pass an output directory, a results_*.json or a samples_*.jsonl")
    runs: list[HarnessRun] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UserError(f"{p}: no such file or directory")
        if p.is_dir():
            found = _runs_in_dir(p)
            if not any(r.samples for r in found):
                raise UserError(f"{p}: no samples files (samples_<task>_<date>.jsonl) found; run lm_eval with "
                                "--log_samples and --output_path")
            runs += found
        elif _is_results(p):
            siblings = [f for f in p.parent.iterdir() if f.suffix == ".jsonl"]
            run = next((r for r in _runs_of_files([p, *siblings]) if r.results_path == p), None)
            if run is None or not run.samples:
                raise UserError(f"{p}: no samples files beside it; run lm_eval with --log_samples")
            runs.append(run)
        elif p.suffix == ".jsonl":
            m = _NEW_SAMPLES.match(p.name)
            results_file = None
            if m:
                candidate = p.parent / f"results_{m.group('date')}.json"
                results_file = candidate if candidate.exists() else None
            elif (p.parent / "results.json").exists():
                results_file = p.parent / "results.json"
            run = _runs_of_files([p] + ([results_file] if results_file else []))
            runs += [r for r in run if r.samples]
        else:
            raise UserError(f"{p}: expected an lm-eval output directory, a results_*.json or a samples_*.jsonl")
    return runs


# ------------------------------------------------------------------------------ parsing
def _records(path: Path) -> Iterable[tuple[int, dict]]:
    """(line, record) of a samples file: JSON lines (0.4.3+) or one JSON array (0.4.2)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        # Line numbers of the array's records: where each top-level object starts.
        starts = [i + 1 for i, line in enumerate(text.splitlines()) if line.startswith("  {")]
        for k, rec in enumerate(data):
            line = starts[k] if k < len(starts) else 1
            if not isinstance(rec, dict):
                raise UserError(f"{path}:{line}: expected a JSON object, got {type(rec).__name__}")
            yield line, rec
        return
    yield from json_lines(path, text)


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise UserError(f"{where}: expected a log-likelihood, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise UserError(f"{where}: expected a log-likelihood (a number or its string), got {value!r}")


def _arguments(rec: dict, where: str) -> list[tuple[Any, Any]]:
    args = rec.get("arguments")
    if isinstance(args, dict):
        def order(key: str) -> int:
            m = re.match(r"gen_args_(\d+)$", key)
            return int(m.group(1)) if m else 10**9
        out = []
        for key in sorted(args, key=order):
            a = args[key]
            if not isinstance(a, dict):
                raise UserError(f"{where}: 'arguments'.{key} is not an object")
            out.append((a.get("arg_0"), a.get("arg_1")))
        return out
    if isinstance(args, list):
        out = []
        for a in args:
            if not isinstance(a, (list, tuple)) or len(a) < 2:
                raise UserError(f"{where}: expected 'arguments' entries [context, continuation], got {a!r}")
            out.append((a[0], a[1]))
        return out
    raise UserError(f"{where}: missing 'arguments'")


def _loglikelihoods(rec: dict, n: int, where: str) -> list[float]:
    resps = rec.get("filtered_resps")
    if resps is None and isinstance(rec.get("resps"), list):
        resps = [r[0] if isinstance(r, list) and r else r for r in rec["resps"]]
    if not isinstance(resps, list) or len(resps) != n:
        raise UserError(f"{where}: expected {n} 'filtered_resps' entries (one per request), got "
                        f"{len(resps) if isinstance(resps, list) else type(resps).__name__}")
    out = []
    for r in resps:
        if isinstance(r, (list, tuple)) and r:
            out.append(_float(r[0], where))
        else:
            out.append(_float(r, where))
    return out


def _is_multiple_choice_record(rec: dict) -> bool:
    """Shape test when the results file does not say: several (context, continuation) string
    requests whose responses are [log-likelihood, is-greedy] pairs."""
    try:
        args = _arguments(rec, "")
    except UserError:
        return False
    if len(args) < 2 or not all(isinstance(c, str) and isinstance(x, str) for c, x in args):
        return False
    resps = rec.get("filtered_resps")
    return isinstance(resps, list) and all(isinstance(r, (list, tuple)) and len(r) == 2 for r in resps)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max()
    e = np.exp(z)
    return e / e.sum()


def _label(target: Any, choices: list[str], lls: np.ndarray, acc: Any, where: str) -> int | None:
    """The gold index, or None for a sample with several gold answers."""
    if isinstance(target, list):
        return None
    if isinstance(target, bool):
        raise UserError(f"{where}: target {target!r} is neither an index nor one of the choices")
    if isinstance(target, (int, float)) and float(target).is_integer():
        index = int(target)
        if 0 <= index < len(choices):
            return index
        raise UserError(f"{where}: target {index} out of range for {len(choices)} choices")
    if not isinstance(target, str):
        raise UserError(f"{where}: target {target!r} is neither an index nor one of the choices")
    text = target.strip()
    if text.startswith("[") and text.endswith("]"):
        return None  # several gold answers (multiple_target)
    as_index = int(text) if re.fullmatch(r"\d+", text) and int(text) < len(choices) else None
    as_choice = choices.index(target) if target in choices else None
    if as_index is None and as_choice is None:
        raise UserError(f"{where}: target {target!r} is neither an index nor one of the choices {choices!r}")
    if as_index is None or as_choice is None or as_index == as_choice:
        return as_choice if as_index is None else as_index
    # Both readings possible (choices that are numbers): the one the harness' own acc agrees with.
    pred = int(np.argmax(lls))
    if isinstance(acc, (int, float, str)) and not isinstance(acc, bool):
        try:
            correct = float(acc) == 1.0
        except ValueError:
            correct = None
        if correct is not None and (pred == as_index) != correct and (pred == as_choice) == correct:
            return as_choice
    return as_index


def _read_task(run: HarnessRun, task: str, path: Path, *, model: str, reading: str, filter_name: str,
               notes: list[str]) -> HarnessTask | None:
    cfg = run.config(task)
    output_type = cfg.get("output_type")
    delimiter = cfg.get("target_delimiter", " ")
    if not isinstance(delimiter, str):
        delimiter = " "
    records = list(_records(path))
    if not records:
        notes.append(f"skipped task {task}: {path.name} holds no samples")
        return None
    if output_type is None:
        first = next((rec for _, rec in records if rec.get("filter", "none") == filter_name), records[0][1])
        output_type = "multiple_choice" if _is_multiple_choice_record(first) else "not multiple-choice"
    if output_type != "multiple_choice":
        notes.append(f"skipped task {task}: output_type {output_type}, not multiple_choice ({len(records)} samples)")
        return None
    rows: list[dict] = []
    other_filter = multi_gold = 0
    filters_seen: set[str] = set()
    for lineno, rec in records:
        where = f"{path}:{lineno}"
        rec_filter = rec.get("filter", "none")
        filters_seen.add(str(rec_filter))
        if rec_filter != filter_name:
            other_filter += 1
            continue
        if "doc_id" not in rec:
            raise UserError(f"{where}: missing 'doc_id'")
        args = _arguments(rec, where)
        lls_all = _loglikelihoods(rec, len(args), where)
        metrics = rec.get("metrics") if isinstance(rec.get("metrics"), list) else []
        mutual = "acc_mutual_info" in metrics or "acc_mutual_info" in rec
        keep = [i for i, (ctx, _) in enumerate(args) if not (mutual and ctx == "")]
        if mutual and 2 * len(keep) != len(args):
            raise UserError(f"{where}: acc_mutual_info sample with {len(args)} requests, of which "
                            f"{len(args) - len(keep)} unconditional; expected half")
        conts = [args[i][1] for i in keep]
        contexts = [args[i][0] for i in keep]
        if not all(isinstance(c, str) for c in conts) or not all(isinstance(c, str) for c in contexts):
            raise UserError(f"{where}: expected string contexts and continuations in 'arguments'")
        if len(keep) < 2:
            raise UserError(f"{where}: a multiple-choice sample needs at least 2 choices, got {len(keep)}")
        if len(set(contexts)) > 1 and len(set(conts)) == 1:
            notes.append(f"skipped task {task}: its choices are in the context (multiple_input, as in winogrande); "
                         "the gold index is not in the samples file")
            return None
        choices = [c[len(delimiter):] for c in conts] if delimiter and all(c.startswith(delimiter) for c in conts) \
            else list(conts)
        lls = np.array([lls_all[i] for i in keep], dtype=np.float64)
        if not np.isfinite(lls).all():
            raise UserError(f"{where}: log-likelihoods must be finite, got {lls.tolist()}")
        label = _label(rec.get("target"), choices, lls, rec.get("acc"), where)
        if label is None:
            multi_gold += 1
            continue
        if reading == "acc_norm":
            lengths = np.array([float(len(c)) for c in choices])
            if (lengths == 0).any():
                raise UserError(f"{where}: an empty choice has no length to normalize by (--reading acc_norm)")
            probs = _softmax(lls / lengths)
        else:
            probs = _softmax(lls)
        doc = rec.get("doc") if isinstance(rec.get("doc"), dict) else {}
        row = {"model": model, "dataset": task, "doc_id": rec["doc_id"], "doc": doc,
               "probs": [float(p) for p in probs], "label": int(label), "prompt": contexts[0],
               "n_options": len(choices), "reading": f"lm-eval:{reading}"}
        if all(_SINGLE.match(c) for c in choices):
            row["option_mass"] = float(min(1.0, np.exp(lls).sum()))
        if isinstance(doc.get("subject"), str):
            row["subject"] = doc["subject"]
        rows.append(row)
    if other_filter:
        notes.append(f"task {task}: read filter {filter_name!r}, skipped {other_filter} samples of "
                     f"{', '.join(sorted(filters_seen - {filter_name})) or 'other filters'}")
    if multi_gold:
        notes.append(f"task {task}: skipped {multi_gold} samples with several gold answers")
    if not rows:
        if filters_seen and filter_name not in filters_seen:
            notes.append(f"skipped task {task}: no samples of filter {filter_name!r} "
                         f"(it has {', '.join(sorted(filters_seen))}; pass --filter)")
        return None
    _assign_ids(task, rows)
    harness = {}
    for metric in ("acc", "acc_norm", "brier_score"):
        value = run.harness_metric(task, metric, filter_name)
        if value is not None:
            harness[metric] = value
    return HarnessTask(task=task, model=model, path=path, rows=rows, harness=harness)


def _assign_ids(task: str, rows: list[dict]) -> None:
    """The doc's own id field where every doc has a distinct one, else ``<task>/<doc_id>``."""
    for name in ID_FIELDS:
        values = [r["doc"].get(name) for r in rows]
        if all(isinstance(v, (str, int)) and not isinstance(v, bool) and str(v) != "" for v in values) \
                and len({str(v) for v in values}) == len(values):
            for r, v in zip(rows, values):
                r["id"] = str(v)
            break
    else:
        for r in rows:
            r["id"] = f"{task}/{r['doc_id']}"
    for r in rows:
        del r["doc"], r["doc_id"]


def read_tasks(paths: Sequence[str | os.PathLike], *, model: str | None = None, reading: str = "acc",
               filter_name: str = "none", tasks: Sequence[str] | None = None,
               notes: list[str] | None = None) -> list[HarnessTask]:
    """Every multiple-choice task under ``paths`` as a :class:`HarnessTask` (see the module docstring)."""
    if reading not in READINGS:
        raise UserError(f"unknown reading {reading!r}; expected one of {', '.join(READINGS)}")
    notes = [] if notes is None else notes
    runs = find_runs(paths)
    # The newest samples file of each (model, task); older ones are named in a note.
    chosen: dict[tuple[str, str], tuple[HarnessRun, Path]] = {}
    for run in runs:
        name = model or run.model_name or "lm-eval"
        for task, path in run.samples.items():
            if tasks and task not in tasks:
                continue
            key = (name, task)
            if key in chosen:
                older, newer = sorted([chosen[key], (run, path)], key=lambda rp: (rp[0].date, rp[1].stat().st_mtime))
                notes.append(f"task {task} of {name}: read {newer[1].name}, ignored the older {older[1].name}")
                chosen[key] = newer
            else:
                chosen[key] = (run, path)
    if tasks:
        missing = [t for t in tasks if not any(t == task for _, task in chosen)]
        if missing:
            raise UserError(f"no samples for task {', '.join(missing)} in {', '.join(str(p) for p in paths)}")
    out = []
    for (name, task), (run, path) in chosen.items():
        read = _read_task(run, task, path, model=name, reading=reading, filter_name=filter_name, notes=notes)
        if read is not None:
            out.append(read)
    if not out:
        raise UserError(f"no multiple-choice samples in {', '.join(str(p) for p in paths)}"
                        + (f" ({'; '.join(notes)})" if notes else ""))
    return out


def read_lm_eval(paths: Sequence[str | os.PathLike], *, model: str | None = None, reading: str = "acc",
                 filter_name: str = "none", tasks: Sequence[str] | None = None) -> ImportResult:
    """Read lm-eval output as predictions rows (the rules: this module's docstring).

    Parameters
    ----------
    paths : sequence of path
        lm-eval output directories (searched recursively), ``results_*.json`` or samples files.
    model : str, optional
        Model name for every row (default: the results file's ``model_name``).
    reading : {"acc", "acc_norm"}
    filter_name : str, default="none"
    tasks : sequence of str, optional
        Only these tasks.

    Returns
    -------
    ImportResult
        Rows in file order; ``notes`` say what was skipped and, per task, the imported accuracy
        and Brier score beside the harness' own.
    """
    notes: list[str] = []
    read = read_tasks(paths, model=model, reading=reading, filter_name=filter_name, tasks=tasks, notes=notes)
    for t in read:
        notes.append(agreement_line(t, reading))
    frame = pd.DataFrame.from_records([r for t in read for r in t.rows])
    return ImportResult(frame=frame, notes=notes)


def imported_metrics(task: HarnessTask) -> dict[str, float]:
    """Accuracy (argmax of the rows' probabilities, first index on ties as ``np.argmax``) and
    multi-class Brier of one task's rows."""
    probs = [np.asarray(r["probs"]) for r in task.rows]
    labels = np.array([r["label"] for r in task.rows])
    acc = float(np.mean([int(np.argmax(p)) == y for p, y in zip(probs, labels)]))
    brier = float(np.mean([((p - np.eye(len(p))[y]) ** 2).sum() for p, y in zip(probs, labels)]))
    return {"accuracy": acc, "brier": brier}


def agreement_line(task: HarnessTask, reading: str) -> str:
    """``task first_x (24 items): accuracy 0.375 (harness acc 0.375), Brier 1.0510 (harness 1.0510)``."""
    ours = imported_metrics(task)
    acc_key = "acc_norm" if reading == "acc_norm" else "acc"
    parts = [f"task {task.task} ({len(task.rows)} items): accuracy {ours['accuracy']:.4f}"]
    if acc_key in task.harness:
        parts[-1] += f" (harness {acc_key} {task.harness[acc_key]:.4f})"
    if reading == "acc":
        text = f"Brier {ours['brier']:.4f}"
        if "brier_score" in task.harness:
            text += f" (harness brier_score {task.harness['brier_score']:.4f})"
        parts.append(text)
    line = ", ".join(parts)
    mismatch = (acc_key in task.harness and not math.isclose(ours["accuracy"], task.harness[acc_key], abs_tol=1e-9))
    if mismatch:
        line += " — differs from the harness (ties broken differently, or the samples are not the whole run)"
    return line
