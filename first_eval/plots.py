"""Plotly figures for the report and the dashboard — the drawing half of two-phase plots.

Every function here takes data that was computed elsewhere (a
:class:`~first_eval.calibration.ReliabilityData`, rows of ``metrics.json``, the lists in
``trajectory.json``, ``calibration.json`` and ``knowledge.json``) and returns a
:class:`plotly.graph_objects.Figure`. Nothing here reads or writes files, imports streamlit or
computes a metric, so ``first-eval report`` and ``streamlit run app/main.py`` draw the same
figures from the same numbers (STYLE.md 4).

Names, datasets and item text from run files are escaped (:func:`escape_text`): Plotly renders a
subset of HTML in labels, so they are shown, never interpreted. A ``title`` passed in is drawn as
given; escape run-file text in it with :func:`escape_text`.

Colours follow the model: pass the same ``colors`` mapping (see :func:`model_colors`) to every
figure of a page so that a model keeps its colour from chart to chart.

Example
-------
>>> fig = ece_accuracy_figure([{"model": "base", "dataset": "countries", "accuracy": 0.6, "ece": 0.1}])
>>> fig.layout.xaxis.title.text
'accuracy'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "METRIC_LABELS",
    "ROLE_ORDER",
    "confidence_histogram_figure",
    "escape_text",
    "ece_accuracy_figure",
    "id_ood_figure",
    "item_confidence_figure",
    "kl_bytes_figure",
    "knowledge_summaries",
    "mass_distribution_figure",
    "mass_at_k_figure",
    "model_colors",
    "paired_differences_figure",
    "reliability_figure",
    "temperature_grid_figure",
    "trajectory_figure",
]

# Colour-blind-safe first (Okabe–Ito), then Plotly's defaults for long lists.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880")
ROLE_ORDER = ("in-domain", "near-ood", "far-ood")
METRIC_LABELS = {
    "accuracy": "accuracy", "ece": "ECE", "mce": "MCE", "rms_ce": "RMS-CE", "debiased_ece": "debiased ECE",
    "smooth_ece": "smooth ECE", "brier": "Brier", "nll": "NLL", "auroc": "AUROC", "aurc": "AURC",
    "acc_at_80": "accuracy at 80% coverage", "classwise_ece": "classwise ECE",
    "brier_reliability": "Brier reliability", "brier_resolution": "Brier resolution",
    "brier_uncertainty": "Brier uncertainty", "n": "items",
}
# Legends sit under the plot: above it they collide with the title once there are many models.
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=60, b=40),
               legend=dict(orientation="h", yanchor="top", y=-0.16, xanchor="left", x=0))


def model_colors(names: Iterable[str]) -> dict[str, str]:
    """A stable colour per name, in the order given (cycling after 16).

    Examples
    --------
    >>> model_colors(["teacher", "student"])
    {'teacher': '#0072B2', 'student': '#E69F00'}
    """
    out: dict[str, str] = {}
    for name in names:
        if name not in out:
            out[name] = PALETTE[len(out) % len(PALETTE)]
    return out


def _colors(names: Iterable[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    names = list(names)
    base = model_colors(names)
    if colors:
        base.update({k: v for k, v in colors.items() if k in base})
    return base


def escape_text(text: Any) -> str:
    """Text from run files as Plotly shows it literally.

    Plotly renders a subset of HTML in names, labels and hover text (``<b>``, ``<a href>``) and
    substitutes ``%{...}`` in hover templates; escape both so that names and dataset text are
    only ever shown, never interpreted.

    Examples
    --------
    >>> escape_text("<b>x</b> %{y}")
    '&lt;b&gt;x&lt;/b&gt; %&#123;y&#125;'
    """
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("{", "&#123;").replace("}", "&#125;"))


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))


def _ci_arrays(rows: Sequence[Mapping], metric: str) -> dict | None:
    """Asymmetric error bars from ``<metric>_ci`` = [low, high] when every row has one."""
    if not rows or not all(f"{metric}_ci" in r and r[f"{metric}_ci"] for r in rows):
        return None
    vals = [r.get(metric) for r in rows]
    plus = [max(r[f"{metric}_ci"][1] - v, 0.0) if _finite(v) and _finite(r[f"{metric}_ci"][1]) else None
            for r, v in zip(rows, vals)]
    minus = [max(v - r[f"{metric}_ci"][0], 0.0) if _finite(v) and _finite(r[f"{metric}_ci"][0]) else None
             for r, v in zip(rows, vals)]
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, thickness=1.2, width=3)


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14))
    fig.update_layout(title=title, xaxis=dict(visible=False), yaxis=dict(visible=False), **_LAYOUT)
    return fig


# --------------------------------------------------------------------------- reliability
def _bin_table(d: Any) -> dict[str, np.ndarray]:
    """The per-bin arrays of a ReliabilityData (edges, counts, confidence, accuracy, interval)."""
    edges = np.asarray(d.edges, dtype=float)
    counts = np.asarray(d.counts, dtype=float)
    conf = np.asarray(d.mean_confidence, dtype=float)
    acc = np.asarray(d.accuracy, dtype=float)
    low = getattr(d, "ci_low", None)
    high = getattr(d, "ci_high", None)
    return dict(edges=edges, counts=counts, conf=conf, acc=acc,
                low=None if low is None else np.asarray(low, dtype=float),
                high=None if high is None else np.asarray(high, dtype=float))


def reliability_figure(
    diagrams: Mapping[str, Any],
    *,
    title: str = "Reliability diagram",
    colors: Mapping[str, str] | None = None,
    show_counts: bool = True,
    show_intervals: bool = True,
    ece: Mapping[str, float] | None = None,
) -> go.Figure:
    """Overlaid reliability diagrams (accuracy against confidence per bin) with bin counts below.

    Parameters
    ----------
    diagrams : mapping of str to ReliabilityData
        One diagram per model (all on the same dataset and binning), in legend order.
    title : str, default="Reliability diagram"
    colors : mapping of str to str, optional
        Model → colour; default :func:`model_colors` in the order of ``diagrams``.
    show_counts : bool, default=True
        Add a lower panel with the number of items in each bin.
    show_intervals : bool, default=True
        Draw each bin's accuracy interval as an error bar when the data carries one.
    ece : mapping of str to float, optional
        Model → ECE, appended to the legend entry.

    Returns
    -------
    Figure
        Points sit at (mean confidence, accuracy) of each non-empty bin; the dashed diagonal is
        perfect calibration, so points below it are over-confident.
    """
    if not diagrams:
        return _empty(title, "no predictions selected")
    cmap = _colors(diagrams, colors)
    rows = 2 if show_counts else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.72, 0.28] if show_counts else [1.0])
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color="#999999", dash="dash", width=1), hoverinfo="skip"),
                  row=1, col=1)
    for name, d in diagrams.items():
        b = _bin_table(d)
        nonempty = b["counts"] > 0
        lo_e, hi_e = b["edges"][:-1], b["edges"][1:]
        label = escape_text(name) + (f" (ECE {ece[name]:.3f})" if ece and name in ece and _finite(ece[name]) else "")
        err = None
        if show_intervals and b["low"] is not None and b["high"] is not None:
            err = dict(type="data", symmetric=False, thickness=1, width=2,
                       array=np.clip(b["high"] - b["acc"], 0, None)[nonempty],
                       arrayminus=np.clip(b["acc"] - b["low"], 0, None)[nonempty])
        custom = np.stack([lo_e, hi_e, b["counts"], b["conf"] - b["acc"]], axis=1)[nonempty]
        fig.add_trace(go.Scatter(
            x=b["conf"][nonempty], y=b["acc"][nonempty], mode="lines+markers", name=label,
            legendgroup=escape_text(name), line=dict(color=cmap[name], width=2), marker=dict(size=7),
            error_y=err, customdata=custom,
            hovertemplate=(f"<b>{escape_text(name)}</b><br>bin [%{{customdata[0]:.2f}}, %{{customdata[1]:.2f}})"
                           "<br>n = %{customdata[2]:.0f}<br>confidence %{x:.3f}<br>accuracy %{y:.3f}"
                           "<br>gap %{customdata[3]:+.3f}<extra></extra>"),
        ), row=1, col=1)
        if show_counts:
            centers = (lo_e + hi_e) / 2
            fig.add_trace(go.Bar(x=centers, y=b["counts"], width=(hi_e - lo_e) / max(len(diagrams), 1),
                                 name=escape_text(name), legendgroup=escape_text(name), showlegend=False,
                                 marker=dict(color=cmap[name]), opacity=0.8,
                                 hovertemplate=f"{escape_text(name)}: %{{y:.0f}} items<extra></extra>"),
                          row=2, col=1)
    fig.update_yaxes(title_text="accuracy", range=[-0.02, 1.02], row=1, col=1)
    fig.update_xaxes(range=[-0.02, 1.02])
    if show_counts:
        fig.update_yaxes(title_text="items per bin", row=2, col=1)
        fig.update_xaxes(title_text="confidence (top-label probability)", row=2, col=1)
        fig.update_layout(barmode="group", bargap=0.05)
    else:
        fig.update_xaxes(title_text="confidence (top-label probability)", row=1, col=1)
    fig.update_layout(title=title, height=520 if show_counts else 420, **_LAYOUT)
    return fig




def confidence_histogram_figure(
    confidences: Mapping[str, Any],
    *,
    n_bins: int = 20,
    title: str = "Confidence histogram",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Share of items at each confidence, one step line per model.

    Parameters
    ----------
    confidences : mapping of str to array-like of shape (n_items,)
        Top-label confidence of each item, per model.
    n_bins : int, default=20
        Equal-width bins over [0, 1].
    """
    if not confidences:
        return _empty(title, "no predictions selected")
    cmap = _colors(confidences, colors)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    fig = go.Figure()
    for name, conf in confidences.items():
        c = np.clip(np.asarray(conf, dtype=float), 0.0, 1.0)
        counts, _ = np.histogram(c, bins=edges)
        share = counts / max(len(c), 1)
        fig.add_trace(go.Scatter(
            x=np.repeat(edges, 2)[1:-1], y=np.repeat(share, 2), mode="lines", name=escape_text(name),
            line=dict(color=cmap[name], width=2), fill="tozeroy", opacity=0.6,
            hovertemplate=f"{escape_text(name)}<br>confidence %{{x:.2f}}<br>share %{{y:.3f}}<extra></extra>",
        ))
    fig.update_layout(title=title, xaxis_title="confidence (top-label probability)",
                      yaxis_title="share of items", xaxis_range=[0, 1], height=380, **_LAYOUT)
    return fig


# --------------------------------------------------------------------------- metric rows
def ece_accuracy_figure(
    results: Sequence[Mapping],
    *,
    x: str = "accuracy",
    y: str = "ece",
    title: str = "ECE against accuracy",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """One point per (model, dataset): ``y`` (default ECE) against ``x`` (default accuracy).

    Parameters
    ----------
    results : sequence of mapping
        Rows in the ``first-eval metrics --json`` schema (``model``, ``dataset``, metrics and
        optional ``<metric>_ci`` = [low, high], drawn as error bars).
    """
    rows = [r for r in results if _finite(r.get(x)) and _finite(r.get(y))]
    if not rows:
        return _empty(title, "no metric rows")
    cmap = _colors((r["model"] for r in rows), colors)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    symbols = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "hexagon")
    fig = go.Figure()
    for model in cmap:
        sub = [r for r in rows if r["model"] == model]
        fig.add_trace(go.Scatter(
            x=[r[x] for r in sub], y=[r[y] for r in sub], mode="markers", name=escape_text(model),
            marker=dict(color=cmap[model], size=11, line=dict(width=1, color="white"),
                        symbol=[symbols[datasets.index(r["dataset"]) % len(symbols)] for r in sub]),
            error_x=_ci_arrays(sub, x), error_y=_ci_arrays(sub, y),
            text=[escape_text(r["dataset"]) for r in sub],
            hovertemplate=(f"<b>{escape_text(model)}</b><br>%{{text}}<br>{_label(x)} %{{x:.3f}}"
                           f"<br>{_label(y)} %{{y:.4f}}<extra></extra>"),
        ))
    if len(datasets) > 1:  # a legend for the marker shapes
        for i, ds in enumerate(datasets):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"dataset: {escape_text(ds)}",
                                     marker=dict(color="#777777", size=9, symbol=symbols[i % len(symbols)])))
    fig.update_layout(title=title, xaxis_title=_label(x), yaxis_title=_label(y), height=420, **_LAYOUT)
    return fig


def id_ood_figure(
    results: Sequence[Mapping],
    roles: Mapping[str, str],
    *,
    metric: str = "ece",
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """A metric per model, in domain against out of domain: grouped bars with CI error bars.

    Parameters
    ----------
    results : sequence of mapping
        Rows in the ``first-eval metrics --json`` schema.
    roles : mapping of str to str
        Dataset → role (``in-domain``, ``near-ood``, ``far-ood``); datasets are ordered by role.
    metric : str, default="ece"
    """
    title = title or f"{_label(metric)} in domain and out of domain"
    rows = [r for r in results if _finite(r.get(metric))]
    if not rows:
        return _empty(title, "no metric rows")
    rank = {role: i for i, role in enumerate(ROLE_ORDER)}
    datasets = sorted(dict.fromkeys(r["dataset"] for r in rows),
                      key=lambda d: rank.get(roles.get(d, ""), len(ROLE_ORDER)))
    ticks = {d: escape_text(d) + (f"<br>({escape_text(roles[d])})" if roles.get(d) else "") for d in datasets}
    cmap = _colors((r["model"] for r in rows), colors)
    fig = go.Figure()
    for model in cmap:
        sub = sorted((r for r in rows if r["model"] == model), key=lambda r: datasets.index(r["dataset"]))
        fig.add_trace(go.Bar(
            x=[ticks[r["dataset"]] for r in sub], y=[r[metric] for r in sub], name=escape_text(model),
            marker_color=cmap[model], error_y=_ci_arrays(sub, metric),
            hovertemplate=f"<b>{escape_text(model)}</b><br>%{{x}}<br>{_label(metric)} %{{y:.4f}}<extra></extra>",
        ))
    fig.update_layout(title=title, barmode="group", yaxis_title=_label(metric), height=420,
                      xaxis=dict(categoryorder="array", categoryarray=[ticks[d] for d in datasets]), **_LAYOUT)
    return fig


# --------------------------------------------------------------------------- two models
def item_confidence_figure(
    conf_a: Any,
    conf_b: Any,
    correct_a: Any,
    correct_b: Any,
    *,
    model_a: str,
    model_b: str,
    hover: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Per-item confidence of two models on the same items, coloured by who got the item right.

    Parameters
    ----------
    conf_a, conf_b : array-like of shape (n_items,)
        Top-label confidences of the two models, aligned by item.
    correct_a, correct_b : array-like of bool of shape (n_items,)
    hover : sequence of str, optional
        Text per item (e.g. its id); shown as plain text.
    """
    sa, sb = escape_text(model_a), escape_text(model_b)
    title = title or f"Confidence per item: {sa} vs {sb}"
    ca, cb = np.asarray(conf_a, dtype=float), np.asarray(conf_b, dtype=float)
    ra, rb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if ca.size == 0:
        return _empty(title, "no shared items")
    groups = (("both right", ra & rb, "#009E73"), (f"only {sa} right", ra & ~rb, "#0072B2"),
              (f"only {sb} right", ~ra & rb, "#E69F00"), ("both wrong", ~ra & ~rb, "#D55E00"))
    text = np.asarray(hover, dtype=object) if hover is not None else None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#999999", dash="dash", width=1),
                             showlegend=False, hoverinfo="skip"))
    for name, mask, color in groups:
        fig.add_trace(go.Scattergl(
            x=ca[mask], y=cb[mask], mode="markers", name=f"{name} ({int(mask.sum())})",
            marker=dict(color=color, size=5, opacity=0.6),
            text=None if text is None else [escape_text(t) for t in text[mask]],
            hovertemplate=("%{text}<br>" if text is not None else "") +
                          f"{sa} %{{x:.3f}}<br>{sb} %{{y:.3f}}<extra></extra>",
        ))
    fig.update_layout(title=title, xaxis_title=f"confidence of {sa}", yaxis_title=f"confidence of {sb}",
                      xaxis_range=[0, 1.02], yaxis_range=[0, 1.02], height=460, **_LAYOUT)
    return fig


def _diff_fields(d: Any) -> tuple[float, float, float, float]:
    if isinstance(d, Mapping):
        lo, hi = d.get("ci", (d.get("ci_low"), d.get("ci_high")))
        return d["difference"], lo, hi, d.get("p_value", float("nan"))
    return d.difference, d.ci_low, d.ci_high, getattr(d, "p_value", float("nan"))


def paired_differences_figure(
    differences: Mapping[str, Any],
    *,
    model_a: str,
    model_b: str,
    title: str | None = None,
) -> go.Figure:
    """Forest plot of paired differences (``model_a`` − ``model_b``) with 95% CIs.

    Parameters
    ----------
    differences : mapping of str to PairedDifference or mapping
        Metric → object with ``difference``, ``ci_low``, ``ci_high``, ``p_value`` (as returned by
        :func:`first_eval.bootstrap.paired_bootstrap`), or the dict form in ``metrics.json``
        (``difference``, ``ci`` = [low, high], ``p_value``).
    """
    sa, sb = escape_text(model_a), escape_text(model_b)
    title = title or f"{sa} − {sb} (paired, 95% CI)"
    if not differences:
        return _empty(title, "no differences")
    names = list(differences)
    vals = [_diff_fields(differences[n]) for n in names]
    diff = np.array([v[0] for v in vals], dtype=float)
    lo = np.array([v[1] for v in vals], dtype=float)
    hi = np.array([v[2] for v in vals], dtype=float)
    pv = np.array([v[3] for v in vals], dtype=float)
    significant = (lo > 0) | (hi < 0)
    fig = go.Figure()
    fig.add_vline(x=0, line=dict(color="#999999", dash="dash", width=1))
    fig.add_trace(go.Scatter(
        x=diff, y=[_label(n) for n in names], mode="markers", showlegend=False,
        marker=dict(size=10, color=np.where(significant, "#D55E00", "#0072B2")),
        error_x=dict(type="data", symmetric=False, array=np.clip(hi - diff, 0, None),
                     arrayminus=np.clip(diff - lo, 0, None), thickness=1.5, width=4),
        customdata=np.stack([lo, hi, pv], axis=1),
        hovertemplate="%{y}: %{x:+.4f}<br>95% CI [%{customdata[0]:+.4f}, %{customdata[1]:+.4f}]"
                      "<br>p = %{customdata[2]:.4f}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title=f"{sa} − {sb}",
                      yaxis=dict(autorange="reversed"), height=max(260, 40 * len(names) + 120), **_LAYOUT)
    return fig


def baselines_figure(
    comparisons: Sequence[Mapping],
    model: str,
    *,
    metrics: Sequence[str] = ("accuracy", "ece"),
    title: str | None = None,
) -> go.Figure:
    """One model against each of its baselines: forest plots of ``model`` − baseline per dataset.

    Parameters
    ----------
    comparisons : sequence of mapping
        ``metrics.json`` comparison rows (``model_a``, ``model_b``, ``dataset``, ``differences``);
        rows with ``model`` on either side are used, a row with ``model`` as ``model_b`` flipped
        (difference and CI negated) so every point reads ``model`` − baseline.
    model : str
        The model compared (e.g. ``student-first``).
    metrics : sequence of str, default=("accuracy", "ece")
        One panel each, side by side.

    A point is orange when its CI excludes 0 (the raw CI: the report's tables give the
    Holm-adjusted p); for accuracy right is better, for the ECEs left is better.
    """
    from plotly.subplots import make_subplots

    sm = escape_text(model)
    title = title or f"{sm} against its baselines ({sm} − baseline, paired, 95% CI)"
    rows = []
    for c in comparisons:
        if model not in (c.get("model_a"), c.get("model_b")):
            continue
        sign, other = (1.0, c["model_b"]) if c["model_a"] == model else (-1.0, c["model_a"])
        rows.append((other, c["dataset"], sign, c.get("differences") or {}))
    if not rows:
        return _empty(title, f"no paired comparison with {sm}")
    fig = make_subplots(rows=1, cols=len(metrics), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"{_label(m)} ({'higher' if m == 'accuracy' else 'lower'} is better)"
                                        for m in metrics])
    labels = [f"{escape_text(o)} · {escape_text(d)}" for o, d, _, _ in rows]
    for col, metric in enumerate(metrics, start=1):
        x, lo, hi, p = [], [], [], []
        for _, _, sign, diffs in rows:
            d = diffs.get(metric)
            if not d:
                x.append(np.nan), lo.append(np.nan), hi.append(np.nan), p.append(np.nan)
                continue
            v, a, b, pv = _diff_fields(d)
            a, b = (sign * a, sign * b) if sign > 0 else (sign * b, sign * a)
            x.append(sign * v), lo.append(a), hi.append(b), p.append(d.get("p_holm", pv) if isinstance(d, Mapping)
                                                                     else pv)
        x, lo, hi, p = (np.array(v, dtype=float) for v in (x, lo, hi, p))
        significant = (lo > 0) | (hi < 0)
        fig.add_vline(x=0, line=dict(color="#999999", dash="dash", width=1), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=x, y=labels, mode="markers", showlegend=False,
            marker=dict(size=9, color=np.where(significant, "#D55E00", "#0072B2")),
            error_x=dict(type="data", symmetric=False, array=np.clip(hi - x, 0, None),
                         arrayminus=np.clip(x - lo, 0, None), thickness=1.5, width=4),
            customdata=np.stack([lo, hi, p], axis=1),
            hovertemplate="%{y}: %{x:+.4f}<br>95% CI [%{customdata[0]:+.4f}, %{customdata[1]:+.4f}]"
                          "<br>p (Holm where given) = %{customdata[2]:.4f}<extra></extra>",
        ), row=1, col=col)
        fig.update_xaxes(title_text=f"{sm} − baseline", row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=max(300, 34 * len(rows) + 150), **_LAYOUT)
    return fig


# --------------------------------------------------------------------------- training
_TRAJECTORY_LABELS = {"confidence_gap": "confidence − accuracy", "mean_confidence": "mean confidence"}
_SELECTED = {"val-accuracy": "shipped: best val accuracy", "val-ece": "early stop: lowest val ECE",
             "last": "last checkpoint"}


def _rgba(color: str, alpha: float) -> str:
    """``#RRGGBB`` as ``rgba(r, g, b, alpha)`` (other colour strings are returned as they are)."""
    if isinstance(color, str) and color.startswith("#") and len(color) == 7:
        r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
        return f"rgba({r}, {g}, {b}, {alpha})"
    return color


def _with_gap(row: Mapping) -> Mapping:
    """A trajectory row with ``confidence_gap`` (mean confidence − accuracy) where an old row lacks it."""
    if not _finite(row.get("confidence_gap")) and _finite(row.get("mean_confidence")) and _finite(row.get("accuracy")):
        return {**row, "confidence_gap": row["mean_confidence"] - row["accuracy"]}
    return row


def trajectory_figure(
    trajectory: Sequence[Mapping],
    *,
    metrics: Sequence[str] = ("accuracy", "ece", "debiased_ece", "confidence_gap"),
    title: str = "Across fine-tuning checkpoints",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Metrics against training step, one panel per metric, one line per dataset (and model).

    With one model the lines are coloured by dataset; with several, by model (``colors``), the
    datasets told apart by dash. A line whose every point has ``<metric>_ci`` = [low, high] gets
    a shaded 95% band. Steps whose ``selected_by`` is non-empty — the checkpoint a rule picked as
    a model: ``val-accuracy`` (the shipped one), ``val-ece`` (early stopping on validation ECE),
    ``last`` — get a dashed vertical line in every panel, labelled in the first. The
    ``confidence_gap`` panel has a reference line at 0 (over-confident above it).

    Parameters
    ----------
    trajectory : sequence of mapping
        Rows of ``trajectory.json``: ``model``, ``step``, ``dataset`` (optional ``role``) and
        metric values, optionally ``<metric>_ci`` and ``selected_by``. An old row without
        ``confidence_gap`` gets it from ``mean_confidence`` − ``accuracy`` when it has both.
    metrics : sequence of str, default=("accuracy", "ece", "debiased_ece", "confidence_gap")
        Panels, in order; metrics no row has are left out.
    colors : mapping of str to str, optional
        Model → colour (several models) or dataset → colour (one model).
    """
    rows = [_with_gap(r) for r in trajectory if _finite(r.get("step"))]
    metrics = [m for m in metrics if any(_finite(r.get(m)) for r in rows)]
    if not rows or not metrics:
        return _empty(title, "no checkpoints recorded in this run")
    models = list(dict.fromkeys(r.get("model", "") for r in rows))
    datasets = list(dict.fromkeys(r.get("dataset", "") for r in rows))
    roles = {r.get("dataset", ""): r["role"] for r in rows if r.get("role")}
    by_dataset = len(models) == 1
    cmap = _colors(datasets if by_dataset else models, colors)
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    label = lambda m: _TRAJECTORY_LABELS.get(m, _label(m))  # noqa: E731
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[label(m) for m in metrics],
                        horizontal_spacing=0.07)
    for j, metric in enumerate(metrics, start=1):
        for model in models:
            for ds in datasets:
                sub = sorted((r for r in rows if r.get("model", "") == model and r.get("dataset", "") == ds
                              and _finite(r.get(metric))), key=lambda r: r["step"])
                if not sub:
                    continue
                where = ds + (f" ({roles[ds]})" if roles.get(ds) else "")
                name = escape_text(where if by_dataset else (f"{model} · {where}" if ds else model))
                group = escape_text(f"{model}|{ds}")
                color = cmap[ds] if by_dataset else cmap[model]
                steps = [r["step"] for r in sub]
                cis = [r.get(f"{metric}_ci") for r in sub]
                if all(ci and len(ci) == 2 and _finite(ci[0]) and _finite(ci[1]) for ci in cis):
                    fig.add_trace(go.Scatter(
                        x=steps + steps[::-1], y=[ci[1] for ci in cis] + [ci[0] for ci in cis][::-1],
                        fill="toself", fillcolor=_rgba(color, 0.15), line=dict(width=0), mode="lines",
                        hoverinfo="skip", showlegend=False, legendgroup=group, name=name + " 95% CI",
                    ), row=1, col=j)
                fig.add_trace(go.Scatter(
                    x=steps, y=[r[metric] for r in sub], mode="lines+markers",
                    name=name, showlegend=j == 1, legendgroup=group,
                    line=dict(color=color, dash="solid" if by_dataset else dashes[datasets.index(ds) % len(dashes)]),
                    hovertemplate=f"{name}<br>step %{{x}}<br>{label(metric)} %{{y:.4f}}<extra></extra>",
                ), row=1, col=j)
        if metric == "confidence_gap":
            fig.add_hline(y=0, line=dict(color="#999999", dash="dot", width=1), row=1, col=j)
        fig.update_xaxes(title_text="training step", row=1, col=j)
    chosen: dict[float, list[str]] = {}
    for r in rows:
        for rule in r.get("selected_by") or []:
            text = _SELECTED.get(rule, str(rule))
            if len(models) > 1:
                text = f"{r.get('model', '')}: {text}"
            if text not in chosen.setdefault(r["step"], []):
                chosen[r["step"]].append(text)
    for k, (step, texts) in enumerate(sorted(chosen.items())):
        for j in range(1, len(metrics) + 1):
            fig.add_vline(x=step, line=dict(color="#555555", dash="dash", width=1), row=1, col=j,
                          **(dict(annotation_text=escape_text("; ".join(texts)), annotation_position="top right",
                                  annotation_font_size=10, annotation_yshift=-14 * k) if j == 1 else {}))
    fig.update_layout(title=title, height=460, **_LAYOUT)
    fig.update_layout(margin=dict(t=80))
    return fig


METHOD_AXES = {
    "first": "c (softmax(p / c) on top-k probabilities)",
    "temperature": "T (softmax(log p / T))",
}


def temperature_grid_figure(
    entries: Sequence[Mapping],
    *,
    title: str = "Temperature grid: validation ECE against the temperature",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Validation ECE against the temperature of each grid search, the chosen value starred.

    One panel per ``method`` (FIRST's ``c`` on probabilities and an ordinary temperature on
    log-probabilities live on different scales); the dotted line is the ECE before re-shaping.

    Parameters
    ----------
    entries : sequence of mapping
        Rows of ``calibration.json``: ``model``, ``method``, ``temperature``, ``ece_before``,
        ``ece_after`` and ``grid`` = [[c, ece], ...].
    """
    rows = [e for e in entries if e.get("grid")]
    if not rows:
        return _empty(title, "no temperature grid recorded in this run")
    cmap = _colors((e["model"] for e in rows), colors)
    methods = list(dict.fromkeys(str(e.get("method") or "") for e in rows))
    fig = make_subplots(rows=1, cols=len(methods), horizontal_spacing=0.1,
                        subplot_titles=[escape_text(m) if m else "" for m in methods])
    seen: set[str] = set()
    for e in rows:
        col = methods.index(str(e.get("method") or "")) + 1
        model = e["model"]
        grid = np.asarray(e["grid"], dtype=float).reshape(-1, 2)
        grid = grid[np.argsort(grid[:, 0], kind="stable")]
        name = escape_text(model)
        fig.add_trace(go.Scatter(x=grid[:, 0], y=grid[:, 1], mode="lines+markers", name=name, legendgroup=name,
                                 showlegend=model not in seen, line=dict(color=cmap[model]), marker=dict(size=5),
                                 hovertemplate=f"{name} ({escape_text(e.get('method', ''))})<br>%{{x:.3f}}"
                                               "<br>ECE %{y:.4f}<extra></extra>"), row=1, col=col)
        seen.add(model)
        t = e.get("temperature")
        if _finite(t):
            at = e["ece_after"] if _finite(e.get("ece_after")) else float(np.interp(t, grid[:, 0], grid[:, 1]))
            fig.add_trace(go.Scatter(x=[t], y=[at], mode="markers", showlegend=False, legendgroup=name,
                                     marker=dict(symbol="star", size=15, color=cmap[model],
                                                 line=dict(width=1, color="black")),
                                     hovertemplate=f"{name}: chosen {float(t):.3f}<br>ECE %{{y:.4f}}<extra></extra>"),
                          row=1, col=col)
        if _finite(e.get("ece_before")):
            fig.add_trace(go.Scatter(x=[grid[0, 0], grid[-1, 0]], y=[e["ece_before"]] * 2, mode="lines",
                                     showlegend=False, legendgroup=name,
                                     line=dict(color=cmap[model], dash="dot", width=1),
                                     hovertemplate=f"{name} before: ECE %{{y:.4f}}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=METHOD_AXES.get(str(e.get("method")), "temperature"), row=1, col=col)
    fig.update_yaxes(title_text="ECE (validation)", row=1, col=1)
    fig.update_layout(title=title, height=420, **_LAYOUT)
    fig.update_layout(margin=dict(t=80))
    return fig


# --------------------------------------------------------------------------- concentrated knowledge
def knowledge_summaries(knowledge: Mapping) -> dict[str, Mapping]:
    """Label → summary for every (model, positions) in a ``knowledge.json`` document.

    ``knowledge`` is ``{"models": [{"model": str, "summaries": [summary, ...]}, ...]}`` where each
    summary comes from :func:`first_eval.knowledge.summarize`; labels read
    ``"<model> · <positions> positions"``.

    Examples
    --------
    >>> list(knowledge_summaries({"models": [{"model": "teacher", "summaries": [{"positions": "response"}]}]}))
    ['teacher · response positions']
    """
    out: dict[str, Mapping] = {}
    for entry in (knowledge or {}).get("models", []) or []:
        for s in entry.get("summaries", []) or []:
            if isinstance(s, Mapping):
                out[f"{entry.get('model', '?')} · {s.get('positions', '?')} positions"] = s
    return out


def mass_distribution_figure(
    summaries: Mapping[str, Mapping],
    *,
    title: str = "Distribution of mass@5 over positions",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Share of positions by their top-5 mass (``mass5_histogram`` of each summary), one step line each."""
    rows = {k: s for k, s in summaries.items() if s.get("mass5_histogram")}
    if not rows:
        return _empty(title, "no concentrated-knowledge study in this run")
    cmap = _colors(rows, colors)
    fig = go.Figure()
    for label, s in rows.items():
        edges = np.asarray(s["mass5_histogram"]["edges"], dtype=float)
        counts = np.asarray(s["mass5_histogram"]["counts"], dtype=float)
        share = counts / max(counts.sum(), 1.0)
        fig.add_trace(go.Scatter(x=np.repeat(edges, 2)[1:-1], y=np.repeat(share, 2), mode="lines",
                                 name=escape_text(label), line=dict(color=cmap[label], width=2),
                                 hovertemplate=f"{escape_text(label)}<br>mass@5 %{{x:.2f}}<br>"
                                               "share %{y:.3f}<extra></extra>"))
    fig.add_vline(x=0.95, line=dict(color="#999999", dash="dash", width=1))
    fig.update_layout(title=title, xaxis_title="mass@5", yaxis_title="share of positions", xaxis_range=[0, 1],
                      height=380, **_LAYOUT)
    return fig


def mass_at_k_figure(
    summaries: Mapping[str, Mapping],
    *,
    band: tuple[str, str] | None = ("0.25", "0.75"),
    threshold: float = 0.95,
    title: str = "Concentrated knowledge: mass in the top k tokens",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Mean mass@k against k, one curve per (model, positions), with an interquantile band.

    Parameters
    ----------
    summaries : mapping of str to mapping
        Label (e.g. ``"teacher · response"``) → a summary from :func:`first_eval.knowledge.summarize`
        (``k``, ``mass_mean``, ``mass_quantiles``).
    band : (str, str) or None, default=("0.25", "0.75")
        Quantile keys of ``mass_quantiles`` to shade; None for no band.
    threshold : float, default=0.95
        The paper's claim (top-5 > 95%), drawn as a horizontal line.
    """
    if not summaries:
        return _empty(title, "no concentrated-knowledge study in this run")
    cmap = _colors(summaries, colors)
    fig = go.Figure()
    for label, s in summaries.items():
        k = list(s["k"])
        color = cmap[label]
        q = s.get("mass_quantiles") or {}
        if band and band[0] in q and band[1] in q:
            fig.add_trace(go.Scatter(x=k + k[::-1], y=list(q[band[1]]) + list(q[band[0]])[::-1],
                                     fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, legendgroup=escape_text(label)))
        fig.add_trace(go.Scatter(x=k, y=s["mass_mean"], mode="lines+markers", name=escape_text(label),
                                 legendgroup=escape_text(label),
                                 line=dict(color=color, width=2), marker=dict(size=5),
                                 hovertemplate=f"{escape_text(label)}<br>k = %{{x}}<br>mean mass %{{y:.3f}}"
                                               "<extra></extra>"))
    fig.add_hline(y=threshold, line=dict(color="#999999", dash="dash", width=1),
                  annotation_text=f"{threshold:.0%}", annotation_position="bottom right")
    fig.add_vline(x=5, line=dict(color="#cccccc", dash="dot", width=1))
    fig.update_layout(title=title, xaxis_title="k (tokens kept per position)", yaxis_title="mass@k",
                      yaxis_range=[0, 1.02], height=420, **_LAYOUT)
    return fig


def kl_bytes_figure(
    summaries: Mapping[str, Mapping],
    *,
    title: str = "What a top-k store loses and costs",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Two panels against k: KL(full ‖ top-k) in nats, and bytes per position of the store.

    Parameters
    ----------
    summaries : mapping of str to mapping
        As for :func:`mass_at_k_figure` (uses ``kl_full_vs_topk_mean``, ``bytes_per_position``
        and ``full_row_bytes_fp16``).
    """
    if not summaries:
        return _empty(title, "no concentrated-knowledge study in this run")
    cmap = _colors(summaries, colors)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["KL(full ‖ top-k), nats", "bytes per position"],
                        horizontal_spacing=0.12)
    full_bytes = None
    bytes_drawn = False
    for label, s in summaries.items():
        k = list(s["k"])
        if s.get("kl_full_vs_topk_mean") is not None:
            fig.add_trace(go.Scatter(x=k, y=s["kl_full_vs_topk_mean"], mode="lines+markers", name=escape_text(label),
                                     line=dict(color=cmap[label]), marker=dict(size=5),
                                     hovertemplate=f"{escape_text(label)}<br>k = %{{x}}<br>KL %{{y:.4f}}"
                                                   "<extra></extra>"),
                          row=1, col=1)
        if s.get("bytes_per_position") and not bytes_drawn:  # bytes depend on k and V only
            fig.add_trace(go.Scatter(x=k, y=s["bytes_per_position"], mode="lines+markers", name="top-k store",
                                     line=dict(color="#333333"), marker=dict(size=5),
                                     hovertemplate="k = %{x}<br>%{y} bytes<extra></extra>"), row=1, col=2)
            bytes_drawn = True
            full_bytes = s.get("full_row_bytes_fp16")
    if full_bytes:
        fig.add_hline(y=full_bytes, line=dict(color="#D55E00", dash="dash"), row=1, col=2,
                      annotation_text=f"full fp16 row: {int(full_bytes):,} B", annotation_position="bottom left")
    fig.update_xaxes(title_text="k")
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_layout(title=title, height=400, **_LAYOUT)
    return fig
