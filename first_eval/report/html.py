"""``index.html``: the study report as one self-contained page (Plotly inlined, no network).

The page leads with the answer — the verdict list — then the figures (the fine-tuning trajectory
first), then the tables; long tables sit in ``<details>``. All text from run files — model,
dataset and subject names — is HTML-escaped.
"""

from __future__ import annotations

import html
from collections import defaultdict

import numpy as np

from first_eval.report.claims import VALIDATION, Claim
from first_eval.report.markdown import (
    CALIBRATION_HEADER, COMPARISON_HEADER, ECE_CI_NOTE, HEADLINE_HEADER, KNOWLEDGE_HEADER, OTHER_HEADER,
    SEED_HEADER, TRAJECTORY_HEADER, calibration_rows, cell, comparison_rows, environment_items, headline_rows,
    intro, is_predictions_run, knowledge_rows, lead_title, title_of, other_rows, roles_of, seed_rows,
    trajectory_rows,
)

FIRST_ARM = "student-first"
"""The arm the "FIRST against its baselines" figure is drawn for (check_claims' default name)."""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.88em;margin:1em 0}th,td{border:1px solid #ddd;padding:.3em .55em;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600;padding:.1em .4em;border-radius:3px}.held{background:#d8f0d8}
.did-not-hold{background:#f6d6d6}.mixed{background:#f6ecc8}.not-measured,.within-noise{background:#e8e8e8}
.reduced-to-top-k-KD{background:#dde8f6}.over-confident,.under-confident{background:#f6ecc8}
.muted{color:#666;font-size:.9em}.fig{margin:1em 0}details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
ul.verdicts{padding-left:1.2em}ul.verdicts li{margin:.35em 0}b.key{font-variant-numeric:tabular-nums}
details.evidence{display:inline;margin:0 0 0 .4em}details.evidence summary{display:inline;font-weight:400;
color:#06c;font-size:.85em}details.evidence[open]{display:block;margin:.2em 0 .4em 1em}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 0) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{_e(c)}</td>' if i >= numeric_from and numeric_from else f"<td>{_e(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _details(summary: str, inner: str, *, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{_e(summary)}</summary>{inner}</details>"


def _fig(fig) -> str:
    return '<div class="fig">' + fig.to_html(full_html=False, include_plotlyjs=False,
                                             config={"displaylogo": False}) + "</div>"


def _pooled(run, roles: dict[str, str]):
    """(arm, dataset) → (probs, labels) over the arm's seed replicas (items stacked), for the
    reliability diagrams and confidence histograms; validation datasets left out."""
    from first_eval.arms import arm_of
    from first_eval.predictions import group_predictions

    parts: dict[tuple[str, str], list] = defaultdict(list)
    for g in group_predictions(run.predictions):
        if roles.get(g.dataset) != VALIDATION:
            parts[(arm_of(g.model), g.dataset)].append(g)
    out = {}
    for key, groups in parts.items():
        width = max(g.probs.shape[1] for g in groups)
        probs = np.concatenate([np.pad(g.probs, ((0, 0), (0, width - g.probs.shape[1]))) for g in groups])
        out[key] = (probs, np.concatenate([g.labels for g in groups]))
    return out


def _figures(run) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """(section title, html) of every figure built from the run's files: the ones that carry the
    verdicts (the trajectory, the reliability diagram of each dataset, FIRST against its
    baselines), the others, and the paired-difference ones."""
    from first_eval import plots
    from first_eval.calibration import reliability_diagram

    meta = run.metrics.get("metadata", {})
    roles = roles_of(run)
    n_bins, scheme = int(meta.get("bins", 10)), meta.get("scheme", "width")
    shown = [r for r in run.results if roles.get(r["dataset"]) != VALIDATION]
    colors = plots.model_colors(dict.fromkeys(r["model"] for r in run.results))
    by_dataset: dict[str, dict] = defaultdict(dict)
    conf: dict[str, dict] = defaultdict(dict)
    for (arm, dataset), (probs, labels) in _pooled(run, roles).items():
        by_dataset[dataset][arm] = reliability_diagram(probs, labels, n_bins=n_bins, scheme=scheme)
        conf[dataset][arm] = probs.max(axis=1)
    ece = {(r["model"], r["dataset"]): r["ece"] for r in run.results}
    main: list[tuple[str, str]] = []
    more: list[tuple[str, str]] = []
    if run.trajectory:
        main.append(("The mis-calibration trajectory", _fig(plots.trajectory_figure(run.trajectory))))
    for dataset, diagrams in by_dataset.items():
        main.append((f"Reliability — {dataset}", _fig(plots.reliability_figure(
            diagrams, title=f"Reliability diagram — {plots.escape_text(dataset)}", colors=colors,
            ece={m: ece.get((m, dataset), np.nan) for m in diagrams}))))
    comparisons = [c for c in run.metrics.get("comparisons", []) if roles.get(c["dataset"]) != VALIDATION]
    first = FIRST_ARM
    if not is_predictions_run(run) and any(first in (c["model_a"], c["model_b"]) for c in comparisons):
        main.append(("FIRST against its baselines", _fig(plots.baselines_figure(comparisons, first))))
    more.append(("Calibration against accuracy", _fig(plots.ece_accuracy_figure(shown, colors=colors))))
    more.append(("In domain and out of domain", _fig(plots.id_ood_figure(shown, roles, colors=colors))))
    for dataset in by_dataset:
        more.append((f"Confidence — {dataset}", _fig(plots.confidence_histogram_figure(
            conf[dataset], title=f"Confidence histogram — {plots.escape_text(dataset)}", colors=colors))))
    if run.calibration:
        more.append(("Temperature grid", _fig(plots.temperature_grid_figure(run.calibration))))
    summaries = plots.knowledge_summaries(run.knowledge)
    if summaries:
        more.append(("Concentrated knowledge: mass@k", _fig(plots.mass_at_k_figure(summaries))))
        more.append(("Concentrated knowledge: distribution of mass@5", _fig(plots.mass_distribution_figure(summaries))))
        more.append(("Concentrated knowledge: KL and bytes against k", _fig(plots.kl_bytes_figure(summaries))))
    paired = []
    for c in run.metrics.get("comparisons", []):
        paired.append((f"{c['model_a']} − {c['model_b']} on {c['dataset']}", _fig(plots.paired_differences_figure(
            c["differences"], model_a=c["model_a"], model_b=c["model_b"],
            title=f"{plots.escape_text(c['model_a'])} − {plots.escape_text(c['model_b'])} on "
                  f"{plots.escape_text(c['dataset'])}"))))
    return main, more, paired


def render_html(run, claims: list[Claim]) -> str:
    from plotly.offline import get_plotlyjs

    info, meta = run.info, run.metrics.get("metadata", {})
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Study {_e(info.get('study', ''))}"
             f"</title><style>{_CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"]
    parts.append(f"<h1>{_e(title_of(run))}</h1>")
    parts.append(f"<p class='muted'>{intro(run, _e, lambda s: f'<code>{_e(s)}</code>')}</p>")
    # 1. The answer: one line per claim (verdict, claim, its key number); the evidence folded.
    parts.append(f"<h2>{_e(lead_title(run))}</h2><ul class='verdicts'>")
    for c in claims:
        cls = _e(c.verdict.replace(" ", "-").replace(":", ""))
        key = f" — <b class='key'>{_e(c.key)}</b>" if c.key else ""
        evidence = (f"<details class='evidence'><summary>evidence</summary><span class='muted'>{_e(c.evidence)}"
                    "</span></details>") if c.evidence else ""
        parts.append(f"<li><span class='verdict {cls}'>{_e(c.verdict)}</span> {_e(c.claim)}{key}{evidence}</li>")
    parts.append("</ul>")
    # 2. The figures that carry the verdicts, then the others folded.
    main, more, paired = _figures(run)
    parts.append("<h2>Figures</h2>")
    for title, fig_html in main:
        parts.append(f"<h3>{_e(title)}</h3>{fig_html}")
    if more:
        parts.append(_details(f"More figures ({len(more)}: calibration against accuracy, in and out of domain, "
                              "confidence histograms, temperature grid, concentrated knowledge)",
                              "".join(f"<h3>{_e(t)}</h3>{f}" for t, f in more)))
    if paired:
        parts.append(_details(f"Paired differences ({len(paired)} figures)",
                              "".join(f"<h3>{_e(t)}</h3>{f}" for t, f in paired)))
    # 3. The tables.
    parts.append("<h2>Headline metrics (95% CIs)</h2>")
    parts.append(_table(HEADLINE_HEADER, headline_rows(run), 3))
    parts.append(f"<p class='muted'>{_e(ECE_CI_NOTE)}</p>")
    val = headline_rows(run, validation=True)
    if val:
        parts.append("<h2>Validation set</h2><p class='muted'>Used to fit c and the temperature and to select "
                     "checkpoints: never part of a verdict.</p>")
        parts.append(_table(HEADLINE_HEADER, val, 3))
    parts.append(_details("Other metrics (Brier, NLL, AUROC)", _table(OTHER_HEADER, other_rows(run), 4)))
    seeds = seed_rows(run)
    if seeds:
        parts.append("<h2>Seed spread</h2>")
        parts.append(_details(f"Each seed's accuracy and ECE ({len(seeds)} rows)", _table(SEED_HEADER, seeds, 3)))
    comp = comparison_rows(run)
    if comp:
        parts.append("<h2>Paired comparisons</h2><p class='muted'>Differences a − b on the same items; paired "
                     "bootstrap CI (seeds drawn too, for arms with several), two-sided p, Holm-adjusted p over the "
                     "datasets of each pair and metric, and the minimum detectable difference (80% power).</p>")
        parts.append(_details(f"All comparisons ({len(comp)} rows)", _table(COMPARISON_HEADER, comp, 4)))
    if run.calibration:
        parts.append("<h2>Trustworthy maximization</h2><p class='muted'>c is fitted on the validation split; "
                     "the test is on a split it was not fitted on.</p>")
        parts.append(_table(CALIBRATION_HEADER, calibration_rows(run), 2))
    if run.trajectory:
        traj = trajectory_rows(run)
        parts.append("<h2>Across fine-tuning checkpoints</h2>")
        parts.append(_details(f"Every checkpoint ({len(traj)} rows)", _table(TRAJECTORY_HEADER, traj, 5)))
    know = knowledge_rows(run)
    if know:
        parts.append("<h2>Concentrated knowledge</h2>")
        parts.append(_table(KNOWLEDGE_HEADER, know, 2))
    parts.append("<h2>Reproducibility</h2>")
    env = environment_items(run)
    if env:
        parts.append("<ul>" + "".join(f"<li><code>{_e(k)}</code>: {_e(v)}</li>" for k, v in env) + "</ul>")
    parts.append("<pre>" + _e(f"first-eval report {run.path}\n{meta.get('command', '')}") + "</pre>")
    versions = info.get("versions", {})
    if versions:
        parts.append("<p class='muted'>Versions: " + _e(", ".join(f"{k} {v}" for k, v in versions.items())) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["render_html", "cell"]
