"""The stages of a study: each builds one thing (a checkpoint, a top-k store, predictions, a
knowledge study) in the content-addressed cache (:mod:`first_eval.study.cache`).

Every stage's key holds exactly what determines its result:

=============  =========================================================================
stage          key inputs (besides the package and stage format versions)
=============  =========================================================================
``finetune``   the base model's weights, the training items, the recipe, seed, template
``store``      the teacher's weights, the extraction items and the calibration items,
               k, RS-KD samples, template, ECE bins
``distill``    the student's weights, the store's key, the recipe, seed
``score``      the model's weights, the scored items, the few-shot items, scorer settings
``posthoc``    the scored predictions' bytes, method, folds, seed
``knowledge``  the model's weights, the items, max k, template
``metrics``    each predictions file's bytes and the names the study gives it, bins,
               scheme, bootstrap resamples, seed, comparisons
               (:func:`first_eval.study.outputs.metrics_stage`)
=============  =========================================================================

Weights and items enter by content digest (:mod:`first_eval.digest`): an edited dataset file, a
change to the code that builds a built-in dataset, or a re-trained model with other weights gives a
new key and everything downstream of it is recomputed; an unchanged input is a cache hit, even
when an upstream stage had to be re-run and produced the same bytes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from first_eval.digest import file_digest, items_digest, model_digest
from first_eval.errors import UserError
from first_eval.fileio import write_json_atomic
from first_eval.study.cache import Stage, stage
from first_eval.study.config import DatasetConfig, ModelConfig, StudyConfig

__all__ = ["StageEvent", "StudyState"]


@dataclass(frozen=True)
class StageEvent:
    """One cache look-up: the stage directory's name and whether it was computed (else a hit)."""

    stage: str
    computed: bool


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


@dataclass
class StudyState:
    """What a running study knows: its config, the models and predictions built so far, and the
    cache events of each stage (for the log's hit / computed lines).

    Parameters
    ----------
    cfg : StudyConfig
    datasets : tuple of DatasetConfig
        The datasets to score (``cfg.datasets``, possibly with MMLU's limit lifted).
    progress : bool, default=True
        Progress bars in the training and scoring stages.
    stage_root : Path, optional
        Where the stage cache lives (default ``$FIRST_HOME/stages``).
    """

    cfg: StudyConfig
    datasets: tuple[DatasetConfig, ...]
    progress: bool = True
    stage_root: Path | None = None
    model_paths: dict[str, str] = field(default_factory=dict)        # model name -> spec or checkpoint dir
    stores: dict[str, Stage] = field(default_factory=dict)           # store stage key -> calibrated store
    predictions: dict[tuple[str, str], Path] = field(default_factory=dict)
    calibration: list[dict] = field(default_factory=list)
    trajectory: list[dict] = field(default_factory=list)
    knowledge: dict[str, Any] = field(default_factory=dict)
    events: list[StageEvent] = field(default_factory=list)
    reduced: set[str] = field(default_factory=set)                   # FIRST models trained as top-k KD (no c)
    bottoms: dict[str, tuple[str, int]] = field(default_factory=dict)  # built path -> (base spec, trained top layers)
    checkpoints: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # finetune stage path -> steps
    selected: dict[str, tuple[str, int]] = field(default_factory=dict)  # model name -> (rule, step)
    _shared: dict[tuple[str, int], Any] = field(default_factory=dict, repr=False)
    _items: dict[tuple, list] = field(default_factory=dict, repr=False)
    _items_digests: dict[tuple, str] = field(default_factory=dict, repr=False)
    _digests: dict[str, str] = field(default_factory=dict, repr=False)
    _fewshot_items: dict[str, list] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, cfg: StudyConfig, *, mmlu_full: bool = False, progress: bool = True,
               stage_root: Path | None = None) -> StudyState:
        datasets = tuple(replace(d, limit=None) if (mmlu_full and d.name == "mmlu") else d for d in cfg.datasets)
        return cls(cfg=cfg, datasets=datasets, progress=progress, stage_root=stage_root)

    # ------------------------------------------------------------------------- inputs
    def _items_key(self, name: str, split: str | None, limit: int | None,
                   seed: int | None) -> tuple[tuple, int]:
        seed = self.cfg.seed if seed is None else seed
        return (name, split, limit, seed if limit is not None else None), seed

    def items(self, name: str, split: str | None, limit: int | None, *, seed: int | None = None) -> list:
        """A dataset's items as the stages load them (``seed`` draws the ``limit`` subset; default
        the study's seed)."""
        key, seed = self._items_key(name, split, limit, seed)
        if key not in self._items:
            from first_eval.data import load_dataset

            self._items[key] = load_dataset(name, split=split, limit=limit, seed=seed)
        return self._items[key]

    def items_digest(self, name: str, split: str | None, limit: int | None, *, seed: int | None = None) -> str:
        """:func:`first_eval.digest.items_digest` of :meth:`items`, hashed once a run (every
        model's score key holds its dataset's)."""
        key, _ = self._items_key(name, split, limit, seed)
        if key not in self._items_digests:
            self._items_digests[key] = items_digest(self.items(name, split, limit, seed=seed))
        return self._items_digests[key]

    def model_digest(self, spec: str) -> str:
        if spec not in self._digests:
            self._digests[spec] = model_digest(spec)
        return self._digests[spec]

    def resolve(self, ref: str) -> str:
        """A model name of this study → its built path; anything else is a spec."""
        return self.model_paths.get(ref, ref)

    # ------------------------------------------------------------------------- the cache
    def stage(self, name: str, inputs: dict[str, Any]) -> Stage:
        return stage(name, inputs, root=self.stage_root)

    def ensure(self, st: Stage, compute) -> Stage:
        computed = st.ensure(compute, on_wait=lambda message: _log(f"  {st.id}: {message}"))
        self.events.append(StageEvent(st.id, computed))
        return st

    # ------------------------------------------------------------------------- models
    def build_model(self, m: ModelConfig) -> None:
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
            self.model_paths[m.name] = self.finetune(m)
        elif m.kind == "distill":
            self.model_paths[m.name] = self.distill(m)

    def seed_of(self, m: ModelConfig) -> int:
        """A replica's own seed, else the study's."""
        return self.cfg.seed if m.seed is None else m.seed

    def finetune(self, m: ModelConfig) -> str:
        from first_train.config import FinetuneConfig
        from first_train.finetune import run_finetune

        r = m.finetune
        base = self.resolve(r.model)
        cfg = FinetuneConfig(model=base, dataset=r.dataset, split=r.split, limit=r.limit, out="-", epochs=r.epochs,
                             lr=r.lr, batch_size=r.batch_size, warmup_steps=r.warmup_steps, schedule=r.schedule,
                             save_every=r.save_every,
                             seed=self.seed_of(m), train_top_layers=r.train_top_layers,
                             template=self.cfg.scorer.template, progress=self.progress)
        # The key holds every training option that shapes the result, defaults included (so a changed
        # default is a new key); the model and the items enter by their content digests. `select`
        # is not in it: models that differ only in the checkpoint they pick share one run.
        train = {k: v for k, v in cfg.hashed_dict().items() if k not in ("model", "dataset", "split", "limit")}
        st = self.stage("finetune", {"model": self.model_digest(base),
                                     "items": self.items_digest(r.dataset, r.split, r.limit), "train": train})

        def compute(st: Stage) -> dict:
            run_finetune(cfg.replace(out=str(st.path / "model")))
            return {"model": str(st.path / "model")}

        self.ensure(st, compute)
        model_dir = st.path / "model"
        points = _checkpoints(model_dir)
        self.checkpoints[str(model_dir)] = points
        if r.train_top_layers:
            root = self.bottoms.get(base, (base, 0))[0]
            for _, path in points:
                self.bottoms[path] = (root, r.train_top_layers)
        if r.select == "last":
            return str(model_dir)
        step, path = self.select_checkpoint(points, r.select)
        self.selected[m.name] = (r.select, step)
        return path

    def select_checkpoint(self, points: list[tuple[int, str]], rule: str) -> tuple[int, str]:
        """The checkpoint ``rule`` picks on the validation set: the highest accuracy
        (``val-accuracy``) or the lowest ECE (``val-ece``); ties go to the earliest step."""
        from first_eval.calibration import metric_suite
        from first_eval.predictions import group_predictions, read_predictions

        val = self.cfg.validation
        best = None
        for step, path in points:
            g = next(group_predictions(read_predictions(self.score_spec(path, val))))
            suite = metric_suite(g.probs, g.labels, n_bins=self.cfg.metrics.bins, scheme=self.cfg.metrics.scheme,
                                 n_options=g.n_options)
            value = -suite["accuracy"] if rule == "val-accuracy" else suite["ece"]
            if best is None or value < best[0]:
                best = (value, step, path)
        return best[1], best[2]

    def store(self, m: ModelConfig) -> Stage:
        """The teacher's calibrated top-k store for a distill recipe (one per store key)."""
        from first_train.calibrate import run_calibrate
        from first_train.config import CalibrateConfig, ExtractConfig
        from first_train.extract import run_extract

        r = m.distill
        teacher = self.resolve(r.teacher)
        # first-train extract and calibrate draw a `limit` subset with seed 0 (their own default).
        st = self.stage("store", {"teacher": self.model_digest(teacher),
                                  "items": self.items_digest(r.dataset, r.split, r.limit, seed=0),
                                  "calibration_items": self.items_digest(r.dataset, r.calibration_split, None),
                                  "k": r.k, "rs_samples": 2 * r.k, "seed": self.cfg.seed,
                                  "template": self.cfg.scorer.template, "bins": self.cfg.metrics.bins})
        if st.key in self.stores:
            return self.stores[st.key]

        def compute(st: Stage) -> dict:
            store_dir = str(st.path / "store")
            run_extract(ExtractConfig(teacher=teacher, dataset=r.dataset, split=r.split, limit=r.limit,
                                      out=store_dir, k=r.k, rs_samples=2 * r.k, seed=self.cfg.seed,
                                      template=self.cfg.scorer.template, progress=self.progress))
            result = run_calibrate(CalibrateConfig(store=store_dir, teacher=teacher, dataset=r.dataset,
                                                   split=r.calibration_split, method="reshape",
                                                   bins=self.cfg.metrics.bins,
                                                   template=self.cfg.scorer.template, progress=self.progress))
            return {"calibration": _jsonable(result.get("chosen")), "fits": _jsonable(result.get("fits", {}))}

        self.ensure(st, compute)
        self.stores[st.key] = st
        return st

    def heldout(self, m: ModelConfig, st_store: Stage) -> dict | None:
        """Trustworthy maximization judged where c was not fitted: the re-shaped teacher against
        the raw one on the distillation dataset's test split (its own stage, so that no training
        depends on test items). None when no c was chosen, or c was fitted on test."""
        r = m.distill
        chosen = st_store.summary().get("calibration") or {}
        split = "test"
        if chosen.get("temperature") is None or r.calibration_split == split:
            return None
        teacher = self.resolve(r.teacher)
        mc = self.cfg.metrics
        st = self.stage("heldout", {"store": st_store.key, "items": self.items_digest(r.dataset, split, None),
                                    "bins": mc.bins, "scheme": mc.scheme, "bootstrap": mc.bootstrap,
                                    "seed": self.cfg.seed})

        def compute(st: Stage) -> dict:
            result = self._evaluate_calibration(teacher, r, split, str(st_store.path / "store"), chosen)
            write_json_atomic(st.path / "heldout.json", result)
            return {}

        self.ensure(st, compute)
        return json.loads((st.path / "heldout.json").read_text())

    def _evaluate_calibration(self, teacher: str, r, split: str, store_dir: str, chosen: dict) -> dict:
        """The re-shaped teacher against the raw one on ``split``, which c was not fitted on: the
        answer distribution read from the stored top-k with and without c (a paired bootstrap)."""
        from first_eval.arms import arm_difference
        from first_eval.zoo import load_model
        from first_train.calibrate import answer_probs_from_topk, read_teacher
        from first_train.data import load_examples
        from first_train.store import TopKStore

        model, tokenizer = load_model(teacher)
        _, examples = load_examples(r.dataset, split, None, tokenizer, template=self.cfg.scorer.template)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        readout = read_teacher(model.eval(), examples, k=TopKStore(store_dir).k, pad_id=pad_id)
        if chosen.get("method") == "temperature":
            from first_train.calibrate import answer_probs_from_logits

            raw = answer_probs_from_logits(readout.letter_logits)
            fitted = answer_probs_from_logits(readout.letter_logits, temperature=chosen["temperature"])
        else:
            raw = answer_probs_from_topk(readout.topk_ids, readout.topk_probs, readout.option_ids)
            fitted = answer_probs_from_topk(readout.topk_ids, readout.topk_probs, readout.option_ids,
                                            c=chosen["temperature"])
        mc = self.cfg.metrics
        diff = arm_difference([fitted], [raw], readout.labels, n_resamples=mc.bootstrap or 1000, seed=self.cfg.seed,
                              n_bins=mc.bins, scheme=mc.scheme, metrics=["ece"], n_options=readout.n_options)["ece"]
        return {"dataset": r.dataset, "split": split, "n": int(len(readout.labels)),
                "ece_raw": _ece(raw, readout, mc), "ece_reshaped": _ece(fitted, readout, mc),
                "difference": diff["difference"], "ci": list(diff["ci"]), "p_value": diff["p_value"],
                "mde": diff["mde"]}

    def distill(self, m: ModelConfig) -> str:
        from first_train.config import DistillConfig
        from first_train.distill import run_distill

        r = m.distill
        st_store = self.store(m)
        loss = r.loss
        cal = st_store.summary().get("calibration") or {}
        if loss == "first" and cal.get("temperature") is None and r.student_c is None and not r.label_smoothing:
            # No c beat the raw teacher on validation: FIRST's target is the un-reshaped top-k, the
            # same training as top-k KD (one stage, shared with a top-k arm of the same recipe).
            loss = "topk"
            self.reduced.add(m.name)
        cfg = DistillConfig(student=r.student, store="-", out="-", loss=loss, alpha=r.alpha, epochs=r.epochs,
                            lr=r.lr, batch_size=r.batch_size, warmup_steps=r.warmup_steps, schedule=r.schedule,
                            train_top_layers=r.train_top_layers, student_c=r.student_c,
                            label_smoothing=r.label_smoothing, norm_eps=r.norm_eps, seed=self.seed_of(m),
                            teacher=self.resolve(r.teacher), progress=self.progress)
        # The store's key already holds the teacher, the data and k; the key holds every training
        # option, defaults included; the student enters by its content digest.
        train = {k: v for k, v in cfg.hashed_dict().items() if k not in ("student", "store", "teacher")}
        st = self.stage("distill", {"student": self.model_digest(r.student), "store": st_store.key, "train": train})

        def compute(st: Stage) -> dict:
            run_distill(cfg.replace(store=str(st_store.path / "store"), out=str(st.path / "model")))
            return {"model": str(st.path / "model")}

        self.ensure(st, compute)
        if cal and not any(c.get("store") == st_store.key for c in self.calibration):
            self.calibration.append({"model": r.teacher, "store": st_store.key, **cal,
                                     "evaluation": self.heldout(m, st_store)})
        if r.train_top_layers:
            self.bottoms[str(st.path / "model")] = (self.bottoms.get(r.student, (r.student, 0))[0], r.train_top_layers)
        return str(st.path / "model")

    # ------------------------------------------------------------------------- scoring
    def _fewshot(self, d: DatasetConfig, items: list) -> list:
        """The worked examples before every question: from another split of the same dataset."""
        sc = self.cfg.scorer
        if not sc.shots:
            return []
        if d.display not in self._fewshot_items:
            from first_eval.data import fewshot_pool
            from first_eval.prompts import select_fewshot

            ids = [i.id for i in items]
            pool = fewshot_pool(d.name, scored_split=d.split, scored_ids=ids)
            self._fewshot_items[d.display] = select_fewshot(pool, sc.shots, exclude_ids=ids)
        return self._fewshot_items[d.display]

    def shared_bottom(self, spec: str) -> Any:
        """The :class:`~first_eval.layers.SharedBottom` a model trained with only its top layers
        is scored with (one per base and cut, for the whole run), else None."""
        if spec not in self.bottoms:
            return None
        root, n_top = self.bottoms[spec]
        if (root, n_top) not in self._shared:
            from first_eval.layers import SharedBottom

            cfg = json.loads((Path(spec) / "config.json").read_text())
            n_bottom = int(cfg["num_hidden_layers"]) - n_top
            self._shared[(root, n_top)] = SharedBottom(n_bottom) if n_bottom >= 1 else None
        return self._shared[(root, n_top)]

    def score_spec(self, spec: str, d: DatasetConfig, *, template: str | None = None) -> Path:
        """Predictions of ``spec`` on dataset ``d`` (cached); returns the JSONL path."""
        sc = self.cfg.scorer if template is None else replace(self.cfg.scorer, template=template)
        items = self.items(d.name, d.split, d.limit)
        fewshot = self._fewshot(d, items)
        st = self.stage("score", {"model": self.model_digest(spec),
                                  "items": self.items_digest(d.name, d.split, d.limit),
                                  "fewshot": items_digest(fewshot), "scorer": sc.__dict__})
        path = st.path / "predictions.jsonl"

        def compute(st: Stage) -> dict:
            from first_eval.predictions import write_predictions
            from first_eval.scorer import Scorer
            from first_eval.zoo import load_model

            model, tok = load_model(spec)
            scores = Scorer(model, tok, template=sc.template, fewshot=fewshot, batch_tokens=sc.batch_tokens,
                            progress=self.progress, shared_bottom=self.shared_bottom(spec)).score(items)
            # Cached under neutral names: the same predictions may serve several rows of a study
            # (and of other studies); the run's table names them.
            rows = [s.as_row(model="model", dataset="dataset") for s in scores]
            write_predictions(rows, path)
            return {"n": len(rows)}

        self.ensure(st, compute)
        return path

    def score(self, name: str, d: DatasetConfig) -> None:
        m = self.cfg.model(name)
        self.predictions[(name, d.display)] = self.score_spec(self.resolve(name), d, template=m.template)

    def posthoc(self, m: ModelConfig) -> None:
        r = m.posthoc
        val = self.cfg.validation
        fit_on = self.predictions[(r.model, val.display)] if r.fit == "val" else None
        for d in self.datasets:
            src = self.predictions[(r.model, d.display)]
            inputs = {"source": file_digest(src), "method": r.method, "seed": self.cfg.seed}
            inputs.update({"fit": "val", "fit_on": file_digest(fit_on)} if fit_on else {"folds": r.folds})
            st = self.stage("posthoc", inputs)
            path = st.path / "predictions.jsonl"

            def compute(st: Stage, src: Path = src, path: Path = path) -> dict:
                # SciPy: only when the stage is computed
                from first_eval.calibrators import CALIBRATORS, cross_fit
                from first_eval.predictions import group_predictions, read_predictions, write_predictions

                group = next(group_predictions(read_predictions(src)))
                if fit_on is not None:
                    train = next(group_predictions(read_predictions(fit_on)))
                    calibrator = CALIBRATORS[r.method]().fit(train.probs, train.labels, n_options=train.n_options)
                    probs = calibrator.transform(group.probs)
                    params = {k: v for k, v in vars(calibrator).items() if not k.startswith("_")}
                else:
                    result = cross_fit(r.method, group.probs, group.labels, n_folds=r.folds, seed=self.cfg.seed)
                    probs, params = result.probs, result.params
                out = group.frame.copy()
                out["model"] = m.name
                out["probs"] = [probs[i, : n].tolist() for i, n in enumerate(group.n_options)]
                for col in ("option_mass", "top1_correct"):  # readings of the raw model, not of the recalibration
                    if col in out:
                        out = out.drop(columns=col)
                write_predictions(out, path)
                return {"params": _jsonable(params)}

            self.ensure(st, compute)
            self.predictions[(m.name, d.display)] = path

    def run_trajectory(self) -> None:
        """Every checkpoint of the trajectory model's fine-tuning (step 0: the weights it started
        from), scored on every dataset of the trajectory, with bootstrap CIs; each step records
        the selection rules of the study's models that picked it."""
        t = self.cfg.trajectory
        mc = self.cfg.model(t.model)
        if mc.kind != "finetune":
            raise UserError(f"trajectory: model {t.model!r} is not a finetune recipe")
        from first_eval.arms import compute_arm_results
        from first_eval.predictions import read_predictions

        start = self.resolve(mc.finetune.model)
        run_dir = _run_dir(self.resolve(t.model))
        points = [(0, start)] + self.checkpoints.get(str(run_dir), _checkpoints(run_dir))
        picked: dict[int, list[str]] = {}
        for m in self.cfg.models:
            if m.finetune and _run_dir(self.resolve(m.name)) == run_dir:
                rule, step = self.selected.get(m.name, ("last", points[-1][0]))
                picked.setdefault(step, []).append(rule)
        names = set(t.datasets) or {d.display for d in self.datasets}
        mcfg = self.cfg.metrics
        rows = []
        for d in (x for x in self.datasets if x.display in names):
            for step, spec in points:
                frame = read_predictions(self.score_spec(spec, d))
                frame["model"], frame["dataset"] = t.model, d.display
                row = compute_arm_results(frame, n_bins=mcfg.bins, scheme=mcfg.scheme,
                                          bootstrap=mcfg.bootstrap, seed=self.cfg.seed)[0]
                keep = ("accuracy", "ece", "debiased_ece", "smooth_ece", "nll", "brier", "mean_confidence",
                        "confidence_gap")
                rows.append({"model": t.model, "step": step, "dataset": d.display, "role": d.role, "checkpoint": spec,
                             **{k: row[k] for k in keep if k in row},
                             **{f"{k}_ci": row[f"{k}_ci"] for k in keep if f"{k}_ci" in row},
                             "selected_by": sorted(picked.get(step, []))})
        self.trajectory = rows

    def run_knowledge(self, name: str) -> None:
        k = self.cfg.knowledge
        spec = self.resolve(name)
        st = self.stage("knowledge", {"model": self.model_digest(spec),
                                      "items": self.items_digest(k.dataset, k.split, k.limit),
                                      "max_k": k.max_k, "template": self.cfg.scorer.template})

        def compute(st: Stage) -> dict:
            from first_eval.data import LETTERS
            from first_eval.knowledge import collect_topk, summarize
            from first_eval.prompts import build_prompt, letter_prefix
            from first_eval.zoo import load_model

            model, tok = load_model(spec)
            items = self.items(k.dataset, k.split, k.limit)
            texts, starts = [], []
            for it in items:
                prompt = build_prompt(it, self.cfg.scorer.template, tokenizer=tok)
                answer = letter_prefix(self.cfg.scorer.template) + LETTERS[it.label]
                starts.append(len(tok(prompt, add_special_tokens=False)["input_ids"]))
                texts.append(prompt + answer)
            resp, everywhere = collect_topk(model, tok, texts, starts, max_k=k.max_k, progress=self.progress)
            write_json_atomic(st.path / "knowledge.json", {
                "dataset": k.dataset, "split": k.split, "n_items": len(items),
                "summaries": [summarize(resp, positions="response"), summarize(everywhere, positions="all")]})
            return {}

        self.ensure(st, compute)
        # The cached study is of the weights; the name is this study's.
        entry = {"model": name, **json.loads((st.path / "knowledge.json").read_text())}
        self.knowledge.setdefault("models", []).append(entry)


def _run_dir(path: str) -> Path:
    """A fine-tuning run's model directory, from it or from one of its checkpoints."""
    p = Path(path)
    return p.parent.parent if p.parent.name == "checkpoints" else p


def _checkpoints(model_dir: Path) -> list[tuple[int, str]]:
    """``(step, path)`` of a run's checkpoints; the final step is the model directory itself (the
    checkpoint at that step holds the same weights, and the study scores the directory)."""
    final = _final_step(model_dir)
    ckpts = sorted((int(p.name.split("-")[1]), str(p)) for p in (model_dir / "checkpoints").glob("step-*")
                   if p.name.split("-")[1].isdigit())
    points = [(s, p) for s, p in ckpts if s != final]
    if final is not None:
        points.append((final, str(model_dir)))
    return points


def _ece(probs, readout, mc) -> float:
    from first_eval.calibration import metric_suite

    return float(metric_suite(probs, readout.labels, n_bins=mc.bins, scheme=mc.scheme,
                              n_options=readout.n_options)["ece"])


def _final_step(model_dir: Path) -> int | None:
    from first_train.trainer import finished_run

    rec = finished_run(model_dir) or {}
    step = rec.get("steps", rec.get("step"))
    return int(step) if isinstance(step, (int, float)) else None
