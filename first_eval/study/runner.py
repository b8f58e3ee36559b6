"""``first-eval run``: build what a study needs (cached), score every model on every dataset, and
write the run directory (:mod:`first_eval.rundir`) with its report.

Every stage — a fine-tuned or distilled checkpoint, a teacher's top-k store and its calibration, a
model's predictions on a dataset, a knowledge study — lives in the content-addressed cache
(:mod:`first_eval.study.cache`), keyed by a hash of everything it depends on. A re-run with nothing
changed reads the cache; a change re-does only the stages it touches; a killed run resumes (the
training stages from their own checkpoints).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from first_eval import rundir
from first_eval.errors import UserError
from first_eval.fileio import atomic_path, write_json_atomic
from first_eval.study.cache import Stage, content_hash, stage
from first_eval.study.config import DatasetConfig, ModelConfig, StudyConfig

PACKAGES = ("first-toolkit", "torch", "transformers", "accelerate", "numpy", "pandas", "scikit-learn",
            "netcal", "relplot", "plotly", "streamlit")


TRAIN_PASSES = 5.5
"""A training step's cost in forward passes: forward, backward (≈ 2 more), optimizer and data. Set
from the default study on 2 CPU cores: a unit of the teacher's fine-tuning took 4.9 (against
countries) to 6.6 (against MMLU's long prompts) times a unit of scoring the same model."""


@dataclass
class Plan:
    """The stage list of a study, shown up front and ticked off as it runs.

    Each stage carries a rough ``cost`` — decoder layers × characters of text × passes
    (:data:`TRAIN_PASSES` for a training step) — so the time left is estimated from the pace of the
    stages already run, weighted by what is still to do, rather than by counting stages (a fine-tune
    costs a hundred times what a metrics table does).
    """

    steps: list[tuple[str, Callable[[], Any]]] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)

    def add(self, title: str, fn: Callable[[], Any], cost: float = 0.0) -> None:
        self.steps.append((title, fn))
        self.costs.append(float(cost))


class _Pace:
    """Seconds per unit of cost, learned from the costed stages that actually ran (not cache hits)."""

    CACHED_S = 1.0  # a stage that finished faster than this was read from the cache

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cost = 0.0

    def update(self, cost: float, seconds: float) -> None:
        if cost > 0 and seconds >= self.CACHED_S:
            self.seconds += seconds
            self.cost += cost

    def left(self, remaining_cost: float) -> float | None:
        return self.seconds / self.cost * remaining_cost if self.cost > 0 else None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


class StudyRunner:
    """Runs one :class:`StudyConfig` into a run directory. See the module docstring."""

    def __init__(self, cfg: StudyConfig, out: Path, *, progress: bool = True,
                 mmlu_full: bool = False, stage_root: Path | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.work = self.out.parent / f".{self.out.name}.partial"  # where run() stages the run directory
        self.progress = progress
        self.stage_root = stage_root
        self.datasets = [replace(d, limit=None) if (mmlu_full and d.name == "mmlu") else d for d in cfg.datasets]
        self.model_paths: dict[str, str] = {}      # model name -> spec or checkpoint dir
        self.stores: dict[tuple, Stage] = {}       # (teacher, dataset, split, k) -> calibrated store stage
        self.predictions: dict[tuple[str, str], Path] = {}
        self.calibration: list[dict] = []
        self.trajectory: list[dict] = []
        self.knowledge: dict[str, Any] = {}
        self._items_cache: dict[tuple, list] = {}

    # ------------------------------------------------------------------------- helpers
    def _stage(self, name: str, inputs: dict[str, Any]) -> Stage:
        return stage(name, inputs, root=self.stage_root)

    def _identity(self, spec: str) -> str:
        from first_train.finetune import model_identity

        return model_identity(spec)

    def _items(self, name: str, split: str | None, limit: int | None) -> list:
        key = (name, split, limit)
        if key not in self._items_cache:
            from first_eval.data import load_dataset

            self._items_cache[key] = load_dataset(name, split=split, limit=limit, seed=self.cfg.seed)
        return self._items_cache[key]

    def _resolve(self, ref: str) -> str:
        """A model name of this study → its built path; anything else is a spec."""
        return self.model_paths.get(ref, ref)

    # ------------------------------------------------------------------------- planning
    def plan(self) -> Plan:
        plan = Plan()
        built = set()
        costed_stores: set[tuple] = set()  # a teacher's top-k is extracted once, for its first student
        pending = [m for m in self.cfg.models if m.kind != "posthoc"]
        while pending:  # dependency order: a distill waits for its teacher
            progressed = False
            for m in list(pending):
                deps = {m.distill.teacher} if m.distill else set()
                if m.finetune and m.finetune.model in {x.name for x in self.cfg.models}:
                    deps.add(m.finetune.model)
                if deps <= built:
                    plan.add(self._model_title(m), lambda m=m: self._build_model(m), self._build_cost(m, costed_stores))
                    built.add(m.name)
                    pending.remove(m)
                    progressed = True
            if not progressed:
                raise UserError(f"models {', '.join(x.name for x in pending)} depend on each other in a cycle")
        scored = [m for m in self.cfg.models if m.kind != "posthoc"]
        for d in self.datasets:
            for m in scored:
                plan.add(f"score {m.name} on {d.display}", lambda m=m, d=d: self._score(m.name, d),
                         self._depth(m.name) * self._chars(d.name, d.split, d.limit))
        for m in self.cfg.models:
            if m.kind == "posthoc":
                plan.add(f"{m.name}: cross-fitted {m.posthoc.method} on {m.posthoc.model}'s predictions",
                         lambda m=m: self._posthoc(m))
        if self.cfg.trajectory:
            t = self.cfg.trajectory
            plan.add(f"trajectory: score {t.model}'s checkpoints on {t.dataset}", self._trajectory,
                     self._trajectory_cost())
        if self.cfg.knowledge:
            for name in self.cfg.knowledge.models:
                k = self.cfg.knowledge
                plan.add(f"concentrated knowledge of {name}", lambda name=name: self._knowledge(name),
                         1.5 * self._depth(name) * self._chars(k.dataset, k.split, k.limit))
        plan.add("metrics, bootstrap CIs and paired tests", self._write_outputs)
        plan.add("report", self._write_report)
        return plan

    # ------------------------------------------------------------------------- cost estimates
    def _depth(self, ref: str) -> int:
        """Decoder layers of a study model or spec (for the time estimate only; 30 if unknown)."""
        names = {m.name: m for m in self.cfg.models}
        if ref in names:
            m = names[ref]
            if m.kind == "finetune":
                return self._depth(m.finetune.model)
            if m.kind == "distill":
                return self._depth(m.distill.student)
            if m.kind == "posthoc":
                return self._depth(m.posthoc.model)
            ref = m.spec
        base, _, layers = ref.partition(":layers=")
        if layers:
            return len(layers.split(","))
        try:
            return int(json.loads((Path(base).expanduser() / "config.json").read_text())["num_hidden_layers"])
        except (OSError, ValueError, KeyError, TypeError):
            return 30

    def _chars(self, name: str, split: str | None, limit: int | None) -> int:
        """Characters of the prompts' questions and options (a proxy for their tokens)."""
        return sum(len(it.question) + sum(map(len, it.choices)) + 40 for it in self._items(name, split, limit))

    def _build_cost(self, m: ModelConfig, costed_stores: set[tuple]) -> float:
        if m.kind == "finetune":
            r = m.finetune
            return TRAIN_PASSES * r.epochs * self._depth(m.name) * self._chars(r.dataset, r.split, r.limit)
        if m.kind == "distill":
            r = m.distill
            cost = TRAIN_PASSES * r.epochs * self._depth(m.name) * self._chars(r.dataset, r.split, r.limit)
            key = (r.teacher, r.dataset, r.split, r.calibration_split, r.k)
            if key not in costed_stores:  # the first student of a teacher also extracts its top-k
                costed_stores.add(key)
                cost += self._depth(r.teacher) * (self._chars(r.dataset, r.split, r.limit)
                                                  + self._chars(r.dataset, r.calibration_split, None))
            return cost
        return 0.0

    def _trajectory_cost(self) -> float:
        t = self.cfg.trajectory
        r = self.cfg.model(t.model).finetune
        d = next((x for x in self.datasets if x.display == t.dataset), None)
        if r is None or d is None:
            return 0.0
        steps = math.ceil(r.epochs * math.ceil(len(self._items(r.dataset, r.split, r.limit)) / r.batch_size))
        # Checkpoints before the last step; the base model and the final weights are scored already.
        new = max(math.ceil(steps / r.save_every) - 1, 0) if r.save_every else 0
        return new * self._depth(t.model) * self._chars(d.name, d.split, d.limit)

    def _model_title(self, m: ModelConfig) -> str:
        if m.kind == "spec":
            return f"load {m.name} ({m.spec})"
        if m.kind == "finetune":
            return f"fine-tune {m.name} from {m.finetune.model} on {m.finetune.dataset}/{m.finetune.split}"
        return f"distill {m.name} ({m.distill.loss}) from {m.distill.teacher}"

    # ------------------------------------------------------------------------- stages
    def _build_model(self, m: ModelConfig) -> None:
        if m.kind == "spec":
            from first_eval.zoo import load_model, pretrained_path, resolve

            # Convert and cache now, so that the scoring stages only read; a hub model is loaded
            # (offline, that fails here with its one-line error rather than stages later).
            if resolve(m.spec).kind == "hub":
                load_model(m.spec)
            else:
                pretrained_path(m.spec)
            self.model_paths[m.name] = m.spec
        elif m.kind == "finetune":
            self.model_paths[m.name] = self._finetune(m)
        elif m.kind == "distill":
            self.model_paths[m.name] = self._distill(m)

    def _finetune(self, m: ModelConfig) -> str:
        from first_train.config import FinetuneConfig
        from first_train.finetune import run_finetune

        r = m.finetune
        base = self._resolve(r.model)
        inputs = {"model": self._identity(base), "recipe": r.__dict__, "seed": self.cfg.seed,
                  "template": self.cfg.scorer.template}
        st = self._stage("finetune", inputs)
        if not st.done:
            run_finetune(FinetuneConfig(model=base, dataset=r.dataset, split=r.split, limit=r.limit,
                                        out=str(st.path / "model"), epochs=r.epochs, lr=r.lr,
                                        batch_size=r.batch_size, warmup_steps=r.warmup_steps,
                                        save_every=r.save_every, seed=self.cfg.seed,
                                        template=self.cfg.scorer.template, progress=self.progress))
            st.mark_done({"model": str(st.path / "model")})
        return str(st.path / "model")

    def _store(self, m: ModelConfig) -> Stage:
        from first_train.calibrate import run_calibrate
        from first_train.config import CalibrateConfig, ExtractConfig
        from first_train.extract import run_extract

        r = m.distill
        teacher = self._resolve(r.teacher)
        key = (r.teacher, r.dataset, r.split, r.calibration_split, r.k)
        if key in self.stores:
            return self.stores[key]
        inputs = {"teacher": self._identity(teacher), "dataset": r.dataset, "split": r.split,
                  "calibration_split": r.calibration_split, "k": r.k, "rs_samples": 2 * r.k,
                  "limit": r.limit, "seed": self.cfg.seed, "template": self.cfg.scorer.template,
                  "bins": self.cfg.metrics.bins}
        st = self._stage("store", inputs)
        if not st.done:
            store_dir = str(st.path / "store")
            run_extract(ExtractConfig(teacher=teacher, dataset=r.dataset, split=r.split, limit=r.limit,
                                      out=store_dir, k=r.k, rs_samples=2 * r.k, seed=self.cfg.seed,
                                      template=self.cfg.scorer.template, progress=self.progress))
            result = run_calibrate(CalibrateConfig(store=store_dir, teacher=teacher, dataset=r.dataset,
                                                   split=r.calibration_split, method="reshape",
                                                   bins=self.cfg.metrics.bins,
                                                   template=self.cfg.scorer.template, progress=self.progress))
            st.mark_done({"calibration": _jsonable(result.get("chosen")),
                          "fits": _jsonable(result.get("fits", {}))})
        self.stores[key] = st
        return st

    def _distill(self, m: ModelConfig) -> str:
        from first_train.config import DistillConfig
        from first_train.distill import run_distill

        r = m.distill
        st_store = self._store(m)
        inputs = {"student": self._identity(r.student), "store": st_store.key, "recipe": r.__dict__,
                  "seed": self.cfg.seed}
        st = self._stage("distill", inputs)
        if not st.done:
            run_distill(DistillConfig(student=r.student, store=str(st_store.path / "store"),
                                      out=str(st.path / "model"), loss=r.loss, alpha=r.alpha, epochs=r.epochs,
                                      lr=r.lr, batch_size=r.batch_size, warmup_steps=r.warmup_steps,
                                      seed=self.cfg.seed,
                                      teacher=self._resolve(r.teacher), progress=self.progress))
            st.mark_done({"model": str(st.path / "model")})
        cal = st_store.summary().get("calibration")
        if cal and not any(c.get("store") == st_store.key for c in self.calibration):
            self.calibration.append({"model": r.teacher, "store": st_store.key, **cal})
        return str(st.path / "model")

    def _score_spec(self, spec: str, d: DatasetConfig) -> Path:
        """Predictions of ``spec`` on dataset ``d`` (cached); returns the JSONL path."""
        sc = self.cfg.scorer
        inputs = {"model": self._identity(spec), "dataset": d.name, "split": d.split, "limit": d.limit,
                  "scorer": sc.__dict__, "seed": self.cfg.seed}
        st = self._stage("score", inputs)
        path = st.path / "predictions.jsonl"
        if not st.done:
            from first_eval.predictions import write_predictions
            from first_eval.prompts import select_fewshot
            from first_eval.scorer import Scorer
            from first_eval.zoo import load_model

            items = self._items(d.name, d.split, d.limit)
            fewshot = []
            if sc.shots:
                pool = self._items(d.name, "train", None) if d.name == "countries" else items
                fewshot = select_fewshot(pool, sc.shots, exclude_ids=[i.id for i in items])
            model, tok = load_model(spec)
            scores = Scorer(model, tok, template=sc.template, fewshot=fewshot, batch_tokens=sc.batch_tokens,
                            progress=self.progress).score(items)
            # Cached under a neutral name: the same predictions may serve several rows of a study.
            rows = [s.as_row(model="model", dataset=d.name) for s in scores]
            write_predictions(rows, path)
            st.mark_done({"n": len(rows)})
        return path

    def _score(self, name: str, d: DatasetConfig) -> None:
        self.predictions[(name, d.display)] = self._score_spec(self._resolve(name), d)

    def _posthoc(self, m: ModelConfig) -> None:
        from first_eval.calibrators import cross_fit
        from first_eval.predictions import group_predictions, read_predictions, write_predictions

        r = m.posthoc
        for d in self.datasets:
            src = self.predictions[(r.model, d.display)]
            st = self._stage("posthoc", {"source": str(src), "source_digest": _digest(src),
                                         "method": r.method, "folds": r.folds, "seed": self.cfg.seed})
            path = st.path / "predictions.jsonl"
            if not st.done:
                frame = read_predictions(src)
                group = next(group_predictions(frame))
                result = cross_fit(r.method, group.probs, group.labels, n_folds=r.folds, seed=self.cfg.seed)
                out = group.frame.copy()
                out["model"] = m.name
                out["probs"] = [result.probs[i, : n].tolist() for i, n in enumerate(group.n_options)]
                for col in ("option_mass", "top1_correct"):  # readings of the raw model, not of the recalibration
                    if col in out:
                        out = out.drop(columns=col)
                write_predictions(out, path)
                st.mark_done({"params": _jsonable(result.params)})
            self.predictions[(m.name, d.display)] = path

    def _trajectory(self) -> None:
        t = self.cfg.trajectory
        mc = self.cfg.model(t.model)
        d = next(x for x in self.datasets if x.display == t.dataset)
        if mc.kind != "finetune":
            raise UserError(f"trajectory: model {t.model!r} is not a finetune recipe")
        from first_eval.calibration import metric_suite
        from first_eval.predictions import group_predictions, read_predictions

        model_dir = Path(self._resolve(t.model))
        points = [(0, self._resolve(mc.finetune.model))]
        ckpts = sorted((int(p.name.split("-")[1]), str(p)) for p in (model_dir / "checkpoints").glob("step-*")
                       if p.name.split("-")[1].isdigit())
        final = _final_step(model_dir)
        # The checkpoint at the final step holds the final weights: score the model directory
        # instead, whose predictions the study already has (a cache hit, not a second pass).
        points += [(s, p) for s, p in ckpts if s != final]
        if final is not None:
            points.append((final, str(model_dir)))
        rows = []
        for step, spec in points:
            path = self._score_spec(spec, d)
            g = next(group_predictions(read_predictions(path)))
            suite = metric_suite(g.probs, g.labels, n_bins=self.cfg.metrics.bins, scheme=self.cfg.metrics.scheme,
                                 n_options=g.n_options)
            conf = float(g.probs.max(axis=1).mean())
            rows.append({"model": t.model, "step": step, "dataset": d.display, "checkpoint": spec,
                         "accuracy": suite["accuracy"], "ece": suite["ece"], "nll": suite["nll"],
                         "brier": suite["brier"], "mean_confidence": conf})
        self.trajectory = rows

    def _knowledge(self, name: str) -> None:
        from first_eval.knowledge import collect_topk, summarize
        from first_eval.prompts import build_prompt, letter_prefix
        from first_eval.zoo import load_model

        k = self.cfg.knowledge
        spec = self._resolve(name)
        inputs = {"model": self._identity(spec), "dataset": k.dataset, "split": k.split, "limit": k.limit,
                  "max_k": k.max_k, "template": self.cfg.scorer.template, "seed": self.cfg.seed}
        st = self._stage("knowledge", inputs)
        if not st.done:
            model, tok = load_model(spec)
            items = self._items(k.dataset, k.split, k.limit)
            texts, starts = [], []
            from first_eval.data import LETTERS

            for it in items:
                prompt = build_prompt(it, self.cfg.scorer.template, tokenizer=tok)
                answer = letter_prefix(self.cfg.scorer.template) + LETTERS[it.label]
                n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
                texts.append(prompt + answer)
                starts.append(n_prompt)
            resp, everywhere = collect_topk(model, tok, texts, starts, max_k=k.max_k, progress=self.progress)
            summary = {"model": name, "dataset": k.dataset, "split": k.split, "n_items": len(items),
                       "summaries": [summarize(resp, positions="response"), summarize(everywhere, positions="all")]}
            write_json_atomic(st.path / "knowledge.json", summary)
            st.mark_done({})
        entry = json.loads((st.path / "knowledge.json").read_text())
        self.knowledge.setdefault("models", []).append(entry)

    # ------------------------------------------------------------------------- outputs
    def _write_outputs(self) -> None:
        import pandas as pd

        from first_eval.cli.metrics import compute_comparisons, compute_results
        from first_eval.predictions import read_predictions, write_predictions

        frames = []
        for (model, dataset), path in self.predictions.items():
            f = read_predictions(path)
            f["model"], f["dataset"] = model, dataset
            frames.append(f)
        frame = pd.concat(frames, ignore_index=True)
        pred_path = self.work / rundir.PREDICTIONS_FILE
        write_predictions(frame, pred_path)
        frame = read_predictions(pred_path)  # metrics from exactly what is on disk
        mc = self.cfg.metrics
        results = compute_results(frame, n_bins=mc.bins, scheme=mc.scheme, bootstrap=mc.bootstrap,
                                  seed=self.cfg.seed)
        comparisons = []
        for a, b in self.cfg.comparisons:
            comparisons += compute_comparisons(frame, a, b, n_bins=mc.bins, scheme=mc.scheme,
                                               bootstrap=mc.bootstrap or 1000, seed=self.cfg.seed)
        edges = np.linspace(0.0, 1.0, mc.bins + 1).tolist() if mc.scheme == "width" else None
        write_json_atomic(self.work / rundir.METRICS_FILE, {
            "results": results, "comparisons": comparisons,
            "metadata": {"study": self.cfg.name, "config_hash": self.cfg.hash(), "seed": self.cfg.seed,
                         "bins": mc.bins, "scheme": mc.scheme, "bin_edges": edges, "bootstrap": mc.bootstrap,
                         "versions": package_versions(),
                         "command": f"first-eval metrics {rundir.PREDICTIONS_FILE} --json --bins {mc.bins} "
                                    f"--scheme {mc.scheme} --bootstrap {mc.bootstrap} --seed {self.cfg.seed}"},
        })
        if self.trajectory:
            write_json_atomic(self.work / rundir.TRAJECTORY_FILE, self.trajectory)
        if self.knowledge:
            write_json_atomic(self.work / rundir.KNOWLEDGE_FILE, self.knowledge)
        if self.calibration:
            write_json_atomic(self.work / rundir.CALIBRATION_FILE, self.calibration)
        counts = frame.groupby("dataset", sort=False)["id"].nunique().to_dict()
        rundir.write_run_json(self.work, {
            "study": self.cfg.name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": self.cfg.to_dict(), "config_hash": self.cfg.hash(), "seed": self.cfg.seed,
            "versions": package_versions(),
            "models": [{"name": m.name, "kind": m.kind, "spec": self.model_paths.get(m.name, m.spec)}
                       for m in self.cfg.models],
            "datasets": [{"name": d.display, "source": d.name, "role": d.role, "split": d.split,
                          "n": int(counts.get(d.display, 0))} for d in self.datasets],
        })

    def _write_report(self) -> None:
        from first_eval.report import build_report

        build_report(self.work, shown_as=self.out)

    # ------------------------------------------------------------------------- run
    def run(self) -> Path:
        plan = self.plan()
        # The run directory is written into a hidden sibling and moved into place once complete:
        # a failed or killed run leaves no half-written run behind (its stages stay cached).
        self.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir()
        total = len(plan.steps)
        _log(f"study {self.cfg.name!r} → {self.out} — {total} stages:")
        for i, (title, _) in enumerate(plan.steps, 1):
            _log(f"  {i:>2}. {title}")
        start = time.monotonic()
        pace = _Pace()
        for i, (title, fn) in enumerate(plan.steps, 1):
            t0 = time.monotonic()
            _log(f"[{i}/{total}] {title} …")
            fn()
            took = time.monotonic() - t0
            pace.update(plan.costs[i - 1], took)
            left = pace.left(sum(plan.costs[i:]))
            eta = "" if not left else f", about {_duration(left)} left"  # none once only quick stages remain
            _log(f"[{i}/{total}] done in {_duration(took)} (elapsed {_duration(time.monotonic() - start)}{eta})")
        _publish(self.work, self.out)
        _log(f"report: {self.out / rundir.REPORT_HTML}")
        return self.out


def _publish(work: Path, out: Path) -> None:
    """Move a finished run directory into place: renamed whole when ``out`` is new, file by file
    (each an atomic replace) when it already exists."""
    if not out.exists():
        os.replace(work, out)
        return
    for path in work.iterdir():
        os.replace(path, out / path.name)
    work.rmdir()


def _final_step(model_dir: Path) -> int | None:
    from first_train.trainer import finished_run

    rec = finished_run(model_dir) or {}
    step = rec.get("steps", rec.get("step"))
    return int(step) if isinstance(step, (int, float)) else None


def _digest(path: Path) -> str:
    from first_eval.study.cache import file_digest

    return file_digest(path)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def default_out(cfg: StudyConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{cfg.name}-{stamp}"
