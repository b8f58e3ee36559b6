"""The study report: ``report.md`` and a self-contained ``index.html`` built from a run directory.

``first-eval report DIR`` calls :func:`build_report` on a finished run: nothing is recomputed but
the figures' data (reliability bins from the stored predictions). The figures come from
:mod:`first_eval.plots`, the same functions the dashboard draws with.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from first_eval import rundir
from first_eval.fileio import write_text_atomic
from first_eval.report.claims import Claim, check_claims
from first_eval.report.html import render_html
from first_eval.report.markdown import is_predictions_run, render_markdown, roles_of

__all__ = ["Claim", "build_report", "check_claims", "is_predictions_run"]


def with_confidence(run) -> list[dict]:
    """The run's result rows, each with ``mean_confidence`` and ``confidence_gap`` (mean confidence
    − accuracy): kept where the row has them (a seed-aware run writes them, with a CI), else read
    from the predictions — for an arm, the mean over its seed replicas ``<arm>@<seed>``."""
    from first_eval.arms import arm_of
    from first_eval.predictions import group_predictions

    if all("confidence_gap" in r for r in run.results):
        return list(run.results)
    conf: dict[tuple[str, str], list[float]] = {}
    for g in group_predictions(run.predictions):
        conf.setdefault((arm_of(g.model), g.dataset), []).append(float(g.probs.max(axis=1).mean()))
    rows = []
    for r in run.results:
        c = conf.get((r["model"], r["dataset"]))
        if "confidence_gap" in r or c is None:
            rows.append(dict(r))
            continue
        mean = sum(c) / len(c)
        rows.append({**r, "mean_confidence": mean, "confidence_gap": mean - r["accuracy"]})
    return rows


def build_report(run_dir: str | Path, *, shown_as: str | Path | None = None) -> tuple[Path, Path]:
    """(Re)write ``report.md`` and ``index.html`` of a run directory; returns their paths.

    ``shown_as``: the directory the report names (its run name, the command that rebuilds it),
    when it is written in a staging directory that is moved there afterwards.
    """
    run = rundir.load_run(run_dir)
    rows = with_confidence(run)
    if is_predictions_run(run):
        from first_eval.report.from_predictions import findings

        claims = findings(rows, run.metrics.get("comparisons", []), roles_of(run))
    else:
        claims = check_claims(rows, run.metrics.get("comparisons", []), roles_of(run),
                              knowledge=run.knowledge, calibration=run.calibration, trajectory=run.trajectory)
    shown = replace(run, metrics={**run.metrics, "results": rows},
                    path=run.path if shown_as is None else Path(shown_as))
    md_path = run.path / rundir.REPORT_MD
    html_path = run.path / rundir.REPORT_HTML
    write_text_atomic(md_path, render_markdown(shown, claims))
    write_text_atomic(html_path, render_html(shown, claims))
    return md_path, html_path
