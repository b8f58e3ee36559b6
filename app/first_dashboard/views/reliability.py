"""Reliability: overlaid diagrams with bin counts, recomputed from the predictions at any binning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from first_dashboard.compute import reliability
from first_dashboard.data import Selection
from first_dashboard.text import esc
from first_dashboard.widgets import binning, chart, dataset_picker
from first_eval.plots import confidence_histogram_figure, escape_text, reliability_figure


def render(sel: Selection) -> None:
    st.header("Reliability")
    dataset = dataset_picker(sel, key="rel_dataset")
    n_bins, scheme = binning("rel")
    diagrams, eces, confidences = {}, {}, {}
    for label in sel.models:
        src = sel.sources[label]
        g = sel.group(label, dataset)
        if g is None:
            continue
        diagrams[label], eces[label] = reliability(src.ref, src.model, dataset, n_bins, scheme)
        confidences[label] = g.confidence
    if not diagrams:
        st.info(f"No selected model was scored on {esc(dataset)}.")
        return
    st.caption("Points below the diagonal: the model is more confident than it is accurate (over-confident). "
               f"ECE in the legend at {n_bins} {'equal-width' if scheme == 'width' else 'equal-mass'} bins.")
    chart(reliability_figure(diagrams, ece=eces, colors=sel.colors,
                             title=f"Reliability on {escape_text(dataset)}"), key="rel_fig")
    chart(confidence_histogram_figure(confidences, colors=sel.colors,
                                      title=f"Confidence on {escape_text(dataset)}"), key="rel_hist")
    with st.expander("Per-bin numbers"):
        rows = []
        for label, d in diagrams.items():
            edges = np.asarray(d.edges)
            for i in range(len(edges) - 1):
                rows.append({"model": label, "bin": f"[{edges[i]:.3f}, {edges[i + 1]:.3f})",
                             "items": int(np.asarray(d.counts)[i]),
                             "confidence": float(np.asarray(d.mean_confidence)[i]),
                             "accuracy": float(np.asarray(d.accuracy)[i])})
        st.dataframe(pd.DataFrame(rows), hide_index=True)
