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
from first_eval.report.markdown import render_markdown

__all__ = ["Claim", "build_report", "check_claims"]


def with_confidence(run) -> list[dict]:
    """The run's result rows plus ``mean_confidence`` and ``confidence_gap`` (mean confidence − accuracy),
    read from its predictions."""
    from first_eval.predictions import group_predictions

    conf = {(g.model, g.dataset): float(g.probs.max(axis=1).mean()) for g in group_predictions(run.predictions)}
    rows = []
    for r in run.results:
        c = conf.get((r["model"], r["dataset"]))
        extra = {} if c is None else {"mean_confidence": c, "confidence_gap": c - r["accuracy"]}
        rows.append({**r, **extra})
    return rows


def build_report(run_dir: str | Path, *, shown_as: str | Path | None = None) -> tuple[Path, Path]:
    """(Re)write ``report.md`` and ``index.html`` of a run directory; returns their paths.

    ``shown_as``: the directory the report names (its run name, the command that rebuilds it),
    when it is written in a staging directory that is moved there afterwards.
    """
    run = rundir.load_run(run_dir)
    claims = check_claims(with_confidence(run), run.metrics.get("comparisons", []), run.roles(),
                          knowledge=run.knowledge, calibration=run.calibration)
    shown = run if shown_as is None else replace(run, path=Path(shown_as))
    md_path = run.path / rundir.REPORT_MD
    html_path = run.path / rundir.REPORT_HTML
    write_text_atomic(md_path, render_markdown(shown, claims))
    write_text_atomic(html_path, render_html(shown, claims))
    return md_path, html_path
