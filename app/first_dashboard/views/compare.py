"""Compare two models: paired differences with CIs, per-item confidence, the items they disagree on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from first_dashboard.compute import LETTERS, aligned, paired
from first_dashboard.data import Selection
from first_dashboard.text import esc
from first_dashboard.widgets import binning, chart, dataset_picker, download
from first_eval.plots import METRIC_LABELS, item_confidence_figure, paired_differences_figure

MAX_ROWS = 500


def stored_comparison(sel: Selection, model_a: str, model_b: str, dataset: str, n_bins: int,
                      scheme: str) -> tuple[pd.DataFrame, str] | None:
    """The run's own paired bootstrap of A − B (or B − A, negated) from metrics.json, if it used this binning."""
    src_a, src_b = sel.sources[model_a], sel.sources[model_b]
    if src_a.ref != src_b.ref:
        return None
    summary = next(s for ref, s in sel.runs if ref == src_a.ref)
    if (summary.metadata.get("bins"), summary.metadata.get("scheme")) != (n_bins, scheme):
        return None
    for c in summary.comparisons:
        pair = (c.get("model_a"), c.get("model_b"))
        if c.get("dataset") != dataset or pair not in ((src_a.model, src_b.model), (src_b.model, src_a.model)):
            continue
        sign = 1.0 if pair == (src_a.model, src_b.model) else -1.0
        rows = []
        for metric, d in (c.get("differences") or {}).items():
            lo, hi = (d.get("ci") or [None, None])[:2]
            if d.get("difference") is None or lo is None or hi is None:
                continue
            lo, hi = (lo, hi) if sign > 0 else (-hi, -lo)
            rows.append({"metric": metric, "difference": sign * d["difference"], "ci_low": lo, "ci_high": hi,
                         "p_value": d.get("p_value")})
        if rows:
            return pd.DataFrame(rows), f"stored in metrics.json ({c.get('n_resamples', '?')} resamples)"
    return None


def render(sel: Selection) -> None:
    st.header("Compare two models")
    if len(sel.labels) < 2:
        st.info("The selected runs hold a single model; comparing needs two.")
        return
    models = sel.models if len(sel.models) >= 2 else sel.labels
    c1, c2, c3 = st.columns(3)
    with c1:
        model_a = st.selectbox("Model A", models, index=min(1, len(models) - 1), key="cmp_a")
    with c2:
        model_b = st.selectbox("Model B", models, index=0, key="cmp_b")
    with c3:
        dataset = dataset_picker(sel, key="cmp_dataset")
    if model_a == model_b:
        st.info("Pick two different models.")
        return
    a, b = sel.group(model_a, dataset), sel.group(model_b, dataset)
    if a is None or b is None:
        st.info(f"{esc(model_a if a is None else model_b)} was not scored on {esc(dataset)}.")
        return
    ia, ib = aligned(a, b)
    if len(ia) == 0:
        st.info("These two models share no items on this dataset.")
        return

    n_bins, scheme = binning("cmp")
    stored = stored_comparison(sel, model_a, model_b, dataset, n_bins, scheme)
    live = stored is None or st.toggle("Recompute the paired bootstrap now", key="cmp_live",
                                       help="The run stored this comparison in metrics.json; recompute it with "
                                            "another number of resamples.")
    if live:
        n_resamples = st.select_slider("Bootstrap resamples", [200, 500, 1000, 2000], value=1000,
                                       key="cmp_resamples")
        src_a, src_b = sel.sources[model_a], sel.sources[model_b]
        try:
            diffs = paired(src_a.ref, src_a.model, src_b.ref, src_b.model, dataset, n_resamples, n_bins, scheme)
        except ValueError as exc:
            st.error(esc(str(exc)))
            return
        origin = f"computed now ({n_resamples} resamples, seed 0)"
    else:
        diffs, origin = stored
    st.caption(f"A − B on the {len(ia)} shared items; 95% percentile CIs from a paired bootstrap, {origin}. "
               "Red: the CI excludes 0.")
    chart(paired_differences_figure({r.metric: r for r in diffs.itertuples()}, model_a=model_a, model_b=model_b),
          key="cmp_forest")
    shown = diffs.assign(metric=diffs["metric"].map(lambda m: METRIC_LABELS.get(m, m)))
    st.dataframe(shown, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%+.4f") for c in ("difference", "ci_low", "ci_high")})

    ca, cb = a.confidence[ia], b.confidence[ib]
    ra, rb = a.correct[ia], b.correct[ib]
    chart(item_confidence_figure(ca, cb, ra, rb, model_a=model_a, model_b=model_b, hover=list(a.ids[ia])),
          key="cmp_scatter")

    st.subheader("Items where they disagree")
    pa, pb = a.predictions[ia], b.predictions[ib]
    differ = pa != pb
    table = pd.DataFrame({
        "id": a.ids[ia][differ],
        "gold": [LETTERS[i] for i in a.labels[ia][differ]],
        f"A answer": [LETTERS[i] for i in pa[differ]], "A confidence": ca[differ],
        f"B answer": [LETTERS[i] for i in pb[differ]], "B confidence": cb[differ],
        "right": np.where(ra[differ], "A", np.where(rb[differ], "B", "neither")),
    })
    items = sel.items(model_a, dataset)
    if items is not None:
        extra = items.reindex(table["id"])
        for col in ("subject", "prompt"):
            if col in extra.columns:
                table[col] = extra[col].to_numpy()
    table = table.assign(gap=np.abs(table["A confidence"] - table["B confidence"])) \
        .sort_values("gap", ascending=False, kind="stable").drop(columns="gap")
    st.caption(f"{int(differ.sum())} of {len(ia)} items get different answers "
               f"(sorted by confidence gap{'; first ' + str(MAX_ROWS) + ' shown' if len(table) > MAX_ROWS else ''}). "
               f"A = {esc(model_a)}, B = {esc(model_b)}.")
    st.dataframe(table.head(MAX_ROWS), hide_index=True)
    download("Download disagreements (CSV)", table, "disagreements.csv", key="dl_disagree")
