"""What-if: a temperature applied to one model's predictions, with live ECE and reliability diagram."""

from __future__ import annotations

import streamlit as st

from first_dashboard.compute import fitted_temperature, reliability, suite
from first_dashboard.data import Selection
from first_dashboard.widgets import binning, chart, dataset_picker
from first_eval.plots import escape_text, reliability_figure

TEMPERATURES = [round(0.25 + 0.05 * i, 2) for i in range(76)]  # 0.25 … 4.0


def render(sel: Selection) -> None:
    st.header("What-if: temperature")
    c1, c2 = st.columns(2)
    with c1:
        label = st.selectbox("Model", sel.models, key="wi_model")
    with c2:
        dataset = dataset_picker(sel, key="wi_dataset")
    src = sel.sources[label]
    if sel.group(label, dataset) is None:
        st.info("This model was not scored on this dataset.")
        return
    temperature = st.select_slider("Temperature T (softmax(log p / T); T > 1 softens)", TEMPERATURES,
                                   value=1.0, key="wi_t")
    n_bins, scheme = binning("wi")
    before = suite(src.ref, src.model, dataset, n_bins, scheme)
    after = suite(src.ref, src.model, dataset, n_bins, scheme, float(temperature))
    cols = st.columns(5)
    for col, (key, name, better) in zip(cols, (("ece", "ECE", "lower"), ("nll", "NLL", "lower"),
                                             ("brier", "Brier", "lower"), ("auroc", "AUROC", "higher"),
                                             ("accuracy", "accuracy", "same"))):
        with col:
            delta = after[key] - before[key]
            st.metric(name, f"{after[key]:.4f}", f"{delta:+.4f}" if temperature != 1.0 else None,
                      delta_color="off" if better == "same" else ("inverse" if better == "lower" else "normal"))
    if st.toggle("Show the NLL-optimal temperature on these items", key="wi_fit"):
        t_star = fitted_temperature(src.ref, src.model, dataset)
        st.caption(f"T* = {t_star:.3f}, fitted on these same items: in-sample and optimistic; the run's "
                   "own calibrators are cross-fitted.")
    d0, e0 = reliability(src.ref, src.model, dataset, n_bins, scheme)
    d1, e1 = reliability(src.ref, src.model, dataset, n_bins, scheme, float(temperature))
    diagrams = {f"{label} (T = 1)": d0}
    eces = {f"{label} (T = 1)": e0}
    if temperature != 1.0:
        diagrams[f"{label} (T = {temperature:g})"] = d1
        eces[f"{label} (T = {temperature:g})"] = e1
    chart(reliability_figure(diagrams, ece=eces, title=f"Reliability on {escape_text(dataset)}"), key="wi_fig")
    st.caption("A temperature never changes the answer, so accuracy stays put; it moves confidence only.")
