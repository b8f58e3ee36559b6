"""Rough costs of a study's stages, for the time-left estimate (never for any result).

A stage's cost is decoder layers × characters of text × passes (:data:`TRAIN_PASSES` for a
training step); the time left is the pace of the costed stages that actually ran (cache hits
teach nothing) times the cost still to do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from first_eval.study.config import ModelConfig
from first_eval.study.stages import StudyState

__all__ = ["TRAIN_PASSES", "Pace", "StageCosts", "duration"]

TRAIN_PASSES = 5.5
"""A training step's cost in forward passes: forward, backward (≈ 2 more), optimizer and data. Set
from the default study on 2 CPU cores: a unit of the teacher's fine-tuning took 4.9 (against
countries) to 6.6 (against MMLU's long prompts) times a unit of scoring the same model."""


class Pace:
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


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class StageCosts:
    """Cost estimates of a study's stages (layers × characters × passes)."""

    def __init__(self, state: StudyState) -> None:
        self.state = state
        self.cfg = state.cfg

    def depth(self, ref: str) -> int:
        """Decoder layers of a study model or spec (30 if unknown)."""
        try:
            m = self.cfg.model(ref)
        except KeyError:
            m = None
        if m is not None:
            if m.kind == "finetune":
                return self.depth(m.finetune.model)
            if m.kind == "distill":
                return self.depth(m.distill.student)
            if m.kind == "posthoc":
                return self.depth(m.posthoc.model)
            ref = m.spec
        base, _, layers = ref.partition(":layers=")
        if layers:
            return len(layers.split(","))
        try:
            return int(json.loads((Path(base).expanduser() / "config.json").read_text())["num_hidden_layers"])
        except (OSError, ValueError, KeyError, TypeError):
            return 30

    def chars(self, name: str, split: str | None, limit: int | None) -> int:
        """Characters of the prompts' questions and options (a proxy for their tokens)."""
        return sum(len(it.question) + sum(map(len, it.choices)) + 40 for it in self.state.items(name, split, limit))

    def trained(self, name: str) -> int:
        """Layers a model runs per step or per scored batch: its trained top layers (the rest is
        computed once and shared), else all of them."""
        try:
            m = self.cfg.model(name)
        except KeyError:
            return self.depth(name)
        r = m.finetune or m.distill
        top = getattr(r, "train_top_layers", None) if r is not None else None
        return min(top, self.depth(name)) if top else self.depth(name)

    def build(self, m: ModelConfig, costed_stores: set[tuple]) -> float:
        """A model's training cost; the first student of a teacher's store also pays its extraction."""
        if m.kind == "finetune":
            r = m.finetune
            return TRAIN_PASSES * r.epochs * self.trained(m.name) * self.chars(r.dataset, r.split, r.limit)
        if m.kind == "distill":
            r = m.distill
            cost = TRAIN_PASSES * r.epochs * self.trained(m.name) * self.chars(r.dataset, r.split, r.limit)
            key = (r.teacher, r.dataset, r.split, r.calibration_split, r.k, r.limit)
            if key not in costed_stores:
                costed_stores.add(key)
                cost += self.depth(r.teacher) * (self.chars(r.dataset, r.split, r.limit)
                                                 + self.chars(r.dataset, r.calibration_split, None))
            return cost
        return 0.0

    def score(self, name: str, d) -> float:
        return self.trained(name) * self.chars(d.name, d.split, d.limit)

    def trajectory(self) -> float:
        t = self.cfg.trajectory
        r = self.cfg.model(t.model).finetune
        names = set(t.datasets) or {x.display for x in self.state.datasets}
        if r is None:
            return 0.0
        steps = math.ceil(r.epochs * math.ceil(len(self.state.items(r.dataset, r.split, r.limit)) / r.batch_size))
        # Checkpoints before the last step; the base model and the final weights are scored already.
        new = max(math.ceil(steps / r.save_every) - 1, 0) if r.save_every else 0
        return sum(new * self.trained(t.model) * self.chars(d.name, d.split, d.limit)
                   for d in self.state.datasets if d.display in names)

    def knowledge(self, name: str) -> float:
        k = self.cfg.knowledge
        return 1.5 * self.depth(name) * self.chars(k.dataset, k.split, k.limit)
