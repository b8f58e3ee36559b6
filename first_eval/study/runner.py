"""``first-eval run``: build what a study needs (cached), score every model on every dataset, and
write the run directory (:mod:`first_eval.rundir`) with its report.

The parts, one job each:

- :mod:`first_eval.study.stages` — each stage (a fine-tuned or distilled checkpoint, a teacher's
  top-k store and its calibration, a model's predictions on a dataset, a knowledge study) in the
  content-addressed cache (:mod:`first_eval.study.cache`), keyed by digests of what it depends on;
- :mod:`first_eval.study.plan` — the stages in dependency order, each with a rough cost;
- :mod:`first_eval.study.cost` — those costs and the time-left estimate;
- :mod:`first_eval.study.outputs` — the metrics, the optional files and the report;
- :mod:`first_eval.study.publish` — the finished run directory put in place whole;
- this module — runs the plan, logs each stage (cache hit or computed) and publishes.

A re-run with nothing changed reads the cache; a change re-does only the stages it touches; a
killed run resumes (the training stages from their own checkpoints). Two runs on one
``$FIRST_HOME`` share the cache safely (a lock per stage), and two runs into one ``--out`` take
turns (a lock per run directory).
"""

from __future__ import annotations

import datetime as _dt
import shutil
import sys
import time
from pathlib import Path

from first_eval import rundir
from first_eval.locks import ProcessLock
from first_eval.study.config import StudyConfig
from first_eval.study.cost import Pace, duration
from first_eval.study.plan import Plan, build_plan
from first_eval.study.publish import publish, recover, staging_path
from first_eval.study.stages import StageEvent, StudyState

__all__ = ["StudyRunner", "default_out"]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class StudyRunner:
    """Runs one :class:`StudyConfig` into a run directory. See the module docstring."""

    def __init__(self, cfg: StudyConfig, out: Path, *, progress: bool = True,
                 mmlu_full: bool = False, stage_root: Path | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.work = staging_path(self.out)  # where run() stages the run directory
        self.state = StudyState.create(cfg, mmlu_full=mmlu_full, progress=progress, stage_root=stage_root)
        self.log: list[tuple[str, list[StageEvent]]] = []  # each step's cache look-ups, in order

    def plan(self) -> Plan:
        from first_eval.study.outputs import write_outputs, write_report

        return build_plan(self.state, write_outputs=lambda: write_outputs(self.state, self.work),
                          write_report=lambda: write_report(self.work, self.out))

    def run(self) -> Path:
        plan = self.plan()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        lock = ProcessLock(self.out.parent / f".{self.out.name}.lock", what=f"run directory {self.out}",
                           on_wait=lambda message: _log(f"{self.out}: {message}"))
        with lock:
            # The run directory is written into a hidden sibling and swapped into place once
            # complete: a failed or killed run leaves no half-written run behind (its stages
            # stay cached), and no file of an earlier run in the same place survives.
            recover(self.out)
            shutil.rmtree(self.work, ignore_errors=True)
            self.work.mkdir()
            self._execute(plan)
            publish(self.work, self.out)
        _log(f"report: {self.out / rundir.REPORT_HTML}")
        return self.out

    def _execute(self, plan: Plan) -> None:
        total = len(plan.steps)
        _log(f"study {self.cfg.name!r} → {self.out} — {total} stages:")
        for i, step in enumerate(plan.steps, 1):
            _log(f"  {i:>2}. {step.title}")
        start = time.monotonic()
        pace = Pace()
        for i, step in enumerate(plan.steps, 1):
            t0 = time.monotonic()
            seen = len(self.state.events)
            _log(f"[{i}/{total}] {step.title} …")
            step.run()
            took = time.monotonic() - t0
            pace.update(step.cost, took)
            left = pace.left(sum(plan.costs[i:]))
            eta = "" if not left else f", about {duration(left)} left"  # none once only quick stages remain
            events = self.state.events[seen:]
            self.log.append((step.title, events))
            cache = "; ".join(f"{'computed' if e.computed else 'hit'} {e.stage}" for e in events)
            _log(f"[{i}/{total}] {step.title}: done in {duration(took)} "
                 f"(elapsed {duration(time.monotonic() - start)}{eta})" + (f" — {cache}" if cache else ""))


def default_out(cfg: StudyConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{cfg.name}-{stamp}"
