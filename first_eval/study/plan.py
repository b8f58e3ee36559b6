"""The stage list of a study, in dependency order, shown up front and ticked off as it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from first_eval.errors import UserError
from first_eval.study.config import ModelConfig
from first_eval.study.cost import StageCosts
from first_eval.study.stages import StudyState

__all__ = ["Plan", "Step", "build_plan"]


@dataclass(frozen=True)
class Step:
    """One line of the plan: its title, what runs it, and its rough cost (:mod:`first_eval.study.cost`)."""

    title: str
    run: Callable[[], Any]
    cost: float = 0.0


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    def add(self, title: str, fn: Callable[[], Any], cost: float = 0.0) -> None:
        self.steps.append(Step(title, fn, float(cost)))

    @property
    def costs(self) -> list[float]:
        return [s.cost for s in self.steps]

    @property
    def titles(self) -> list[str]:
        return [s.title for s in self.steps]


def _model_title(m: ModelConfig) -> str:
    if m.kind == "spec":
        return f"load {m.name} ({m.spec})"
    if m.kind == "finetune":
        return f"fine-tune {m.name} from {m.finetune.model} on {m.finetune.dataset}/{m.finetune.split}"
    return f"distill {m.name} ({m.distill.loss}) from {m.distill.teacher}"


def _build_order(models: list[ModelConfig]) -> list[ModelConfig]:
    """The models to build, each after the study models it starts from (a distill after its teacher)."""
    names = {m.name for m in models}
    built: set[str] = set()
    order, pending = [], [m for m in models if m.kind != "posthoc"]
    while pending:
        progressed = False
        for m in list(pending):
            deps = {m.distill.teacher} if m.distill else set()
            if m.finetune and m.finetune.model in names:
                deps.add(m.finetune.model)
            if deps <= built:
                order.append(m)
                built.add(m.name)
                pending.remove(m)
                progressed = True
        if not progressed:
            raise UserError(f"models {', '.join(x.name for x in pending)} depend on each other in a cycle")
    return order


def build_plan(state: StudyState, *, write_outputs: Callable[[], Any], write_report: Callable[[], Any]) -> Plan:
    """Every step of the study: build the models, score them, post-hoc calibrate, trajectory,
    knowledge studies, then ``write_outputs`` (metrics) and ``write_report``."""
    cfg, costs, plan = state.cfg, StageCosts(state), Plan()
    costed_stores: set[tuple] = set()  # a teacher's top-k is extracted once, for its first student
    models = list(cfg.expanded_models())  # an arm's seed replicas, name@seed, each its own model
    for m in _build_order(models):
        plan.add(_model_title(m), lambda m=m: state.build_model(m), costs.build(m, costed_stores))
    scored = [m for m in models if m.kind != "posthoc"]
    for d in state.datasets:
        for m in scored:
            plan.add(f"score {m.name} on {d.display}", lambda m=m, d=d: state.score(m.name, d), costs.score(m.name, d))
    for m in models:
        if m.kind == "posthoc":
            how = "fitted on validation" if m.posthoc.fit == "val" else "cross-fitted on each dataset (oracle)"
            plan.add(f"{m.name}: {m.posthoc.method} {how}, on {m.posthoc.model}'s predictions",
                     lambda m=m: state.posthoc(m))
    if cfg.trajectory:
        t = cfg.trajectory
        on = ", ".join(t.datasets) if t.datasets else "every dataset"
        plan.add(f"trajectory: score {t.model}'s checkpoints on {on}", state.run_trajectory, costs.trajectory())
    if cfg.knowledge:
        for name in cfg.knowledge.models:
            plan.add(f"concentrated knowledge of {name}", lambda name=name: state.run_knowledge(name),
                     costs.knowledge(name))
    plan.add("metrics, bootstrap CIs and paired tests", write_outputs)
    plan.add("report", write_report)
    return plan
