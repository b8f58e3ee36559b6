"""Compare two models: paired differences with CIs, per-item confidence, the items they disagree on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from first_dashboard.compute import LETTERS, aligned, csv_bytes, paired
from first_dashboard.data import Selection
from first_dashboard.text import esc
from first_dashboard.widgets import binning, chart, dataset_picker, download
from first_eval.plots import METRIC_LABELS, item_confidence_figure, paired_differences_figure

MAX_ROWS = 500


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
    n_resamples = st.select_slider("Bootstrap resamples", [200, 500, 1000, 2000], value=1000, key="cmp_resamples")
    src_a, src_b = sel.sources[model_a], sel.sources[model_b]
    try:
        diffs = paired(src_a.ref, src_a.model, src_b.ref, src_b.model, dataset, n_resamples, n_bins, scheme)
    except ValueError as exc:
        st.error(esc(str(exc)))
        return
    st.caption(f"A − B on the {len(ia)} shared items; 95% percentile CIs from a paired bootstrap "
               f"({n_resamples} resamples, seed 0). Red: the CI excludes 0.")
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
    download("Download disagreements (CSV)", csv_bytes(table), "disagreements.csv", key="dl_disagree")
