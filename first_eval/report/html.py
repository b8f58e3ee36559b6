"""``index.html``: the study report as one self-contained page (Plotly inlined, no network).

All text from run files — model, dataset and subject names — is HTML-escaped.
"""

from __future__ import annotations

import html
from collections import defaultdict

import numpy as np

from first_eval.report.claims import Claim
from first_eval.report.markdown import ECE_CI_NOTE, HEADLINE, cell, comparison_rows, headline_rows

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.88em;margin:1em 0}th,td{border:1px solid #ddd;padding:.3em .55em;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600;padding:.1em .4em;border-radius:3px}.held{background:#d8f0d8}
.did-not-hold{background:#f6d6d6}.mixed{background:#f6ecc8}.not-measured,.within-noise{background:#e8e8e8}
.muted{color:#666;font-size:.9em}.fig{margin:1em 0}
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


def _fig(fig) -> str:
    return '<div class="fig">' + fig.to_html(full_html=False, include_plotlyjs=False,
                                             config={"displaylogo": False}) + "</div>"


def _figures(run) -> list[tuple[str, str]]:
    """(section title, html) of every figure, built from the run's files."""
    from first_eval import plots
    from first_eval.calibration import reliability_diagram
    from first_eval.predictions import group_predictions

    meta = run.metrics.get("metadata", {})
    n_bins, scheme = int(meta.get("bins", 10)), meta.get("scheme", "width")
    colors = plots.model_colors(dict.fromkeys(r["model"] for r in run.results))
    by_dataset: dict[str, dict] = defaultdict(dict)
    conf: dict[str, dict] = defaultdict(dict)
    for g in group_predictions(run.predictions):
        by_dataset[g.dataset][g.model] = reliability_diagram(g.probs, g.labels, n_bins=n_bins, scheme=scheme)
        conf[g.dataset][g.model] = g.probs.max(axis=1)
    ece = {(r["model"], r["dataset"]): r["ece"] for r in run.results}
    out: list[tuple[str, str]] = []
    out.append(("Calibration against accuracy", _fig(plots.ece_accuracy_figure(run.results, colors=colors))))
    out.append(("In domain and out of domain", _fig(plots.id_ood_figure(run.results, run.roles(), colors=colors))))
    for dataset, diagrams in by_dataset.items():
        out.append((f"Reliability — {dataset}", _fig(plots.reliability_figure(
            diagrams, title=f"Reliability diagram — {plots.escape_text(dataset)}", colors=colors,
            ece={m: ece.get((m, dataset), np.nan) for m in diagrams}))))
        out.append((f"Confidence — {dataset}", _fig(plots.confidence_histogram_figure(
            conf[dataset], title=f"Confidence histogram — {plots.escape_text(dataset)}", colors=colors))))
    for c in run.metrics.get("comparisons", []):
        out.append((f"{c['model_a']} − {c['model_b']} on {c['dataset']}", _fig(plots.paired_differences_figure(
            c["differences"], model_a=c["model_a"], model_b=c["model_b"],
            title=f"{plots.escape_text(c['model_a'])} − {plots.escape_text(c['model_b'])} on "
                  f"{plots.escape_text(c['dataset'])}"))))
    if run.trajectory:
        out.append(("The mis-calibration trajectory", _fig(plots.trajectory_figure(run.trajectory))))
    if run.calibration:
        out.append(("Temperature grid", _fig(plots.temperature_grid_figure(run.calibration))))
    summaries = plots.knowledge_summaries(run.knowledge)
    if summaries:
        out.append(("Concentrated knowledge: mass@k", _fig(plots.mass_at_k_figure(summaries))))
        out.append(("Concentrated knowledge: distribution of mass@5", _fig(plots.mass_distribution_figure(summaries))))
        out.append(("Concentrated knowledge: KL and bytes against k", _fig(plots.kl_bytes_figure(summaries))))
    return out


def render_html(run, claims: list[Claim]) -> str:
    from plotly.offline import get_plotlyjs

    info, meta = run.info, run.metrics.get("metadata", {})
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Study {_e(info.get('study', ''))}"
             f"</title><style>{_CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"]
    parts.append(f"<h1>Study: {_e(info.get('study', run.name))}</h1>")
    parts.append(f"<p class='muted'>Run {_e(run.name)}, created {_e(info.get('created', '?'))}; config hash "
                 f"<code>{_e(info.get('config_hash', '?'))}</code>; seed {_e(info.get('seed', '?'))}. Confidence is "
                 f"the top-label option probability; ECE uses {_e(meta.get('bins', '?'))} {_e(meta.get('scheme', '?'))}"
                 f" bins; 95% CIs from {_e(meta.get('bootstrap', 0))} bootstrap resamples.</p>")
    parts.append("<h2>What held and what did not</h2><ul>")
    for c in claims:
        cls = c.verdict.replace(" ", "-")
        parts.append(f"<li><span class='verdict {cls}'>{_e(c.verdict)}</span> {_e(c.claim)}<br>"
                     f"<span class='muted'>{_e(c.evidence)}</span></li>")
    parts.append("</ul><h2>Headline metrics (95% CIs)</h2>")
    parts.append(_table(["model", "dataset", "role", "n"] + [h for _, h, _ in HEADLINE], headline_rows(run), 3))
    parts.append(f"<p class='muted'>{_e(ECE_CI_NOTE)}</p>")
    comp = comparison_rows(run)
    if comp:
        parts.append("<h2>Paired comparisons</h2><p class='muted'>Differences a − b on the same items; "
                     "paired bootstrap CI and two-sided p-value.</p>")
        parts.append(_table(["difference", "dataset", "metric", "value", "95% CI", "p"], comp, 3))
    parts.append("<h2>Figures</h2>")
    for title, fig_html in _figures(run):
        parts.append(f"<h3>{_e(title)}</h3>{fig_html}")
    parts.append("<h2>Reproduce</h2><pre>" + _e(f"first-eval report {run.path}\n{meta.get('command', '')}") + "</pre>")
    versions = info.get("versions", {})
    if versions:
        parts.append("<p class='muted'>Versions: " + _e(", ".join(f"{k} {v}" for k, v in versions.items())) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["render_html", "cell"]
