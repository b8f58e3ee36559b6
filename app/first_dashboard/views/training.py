"""Training: ECE across fine-tuning checkpoints (the mis-calibration trajectory) and the temperature grid."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from first_dashboard.data import Selection
from first_dashboard.widgets import chart
from first_eval.plots import METRIC_LABELS, temperature_grid_figure, trajectory_figure


def render(sel: Selection) -> None:
    st.header("Training")
    st.subheader("Across fine-tuning checkpoints")
    trajectory = [r for r in sel.trajectory if r.get("dataset", "") in sel.datasets or not r.get("dataset")]
    if trajectory:
        keys = [k for k in ("ece", "accuracy", "brier", "nll", "mce", "smooth_ece", "auroc")
                if any(k in r for r in trajectory)]
        metrics = st.multiselect("Metrics", keys, default=[k for k in ("ece", "accuracy") if k in keys],
                                 format_func=lambda m: METRIC_LABELS.get(m, m), key="tr_metrics")
        chart(trajectory_figure(trajectory, metrics=metrics or keys[:1], colors=sel.colors), key="tr_traj")
        st.caption("Tuning-induced mis-calibration shows as accuracy and ECE rising together.")
        with st.expander("Checkpoint table"):
            st.dataframe(pd.DataFrame(trajectory), hide_index=True)
    else:
        st.info("The selected runs recorded no checkpoints (trajectory.json is absent or empty).")

    st.subheader("Temperature grid")
    calibration = sel.calibration
    if calibration:
        chart(temperature_grid_figure(calibration, colors=sel.colors), key="tr_grid")
        st.caption("ECE on the validation split at each temperature c; the star marks the chosen c. "
                   "Method `first` re-shapes the top-k probabilities (softmax(p / c)); `temperature` "
                   "divides log-probabilities.")
        st.dataframe(pd.DataFrame([{k: v for k, v in e.items() if k != "grid"} for e in calibration]),
                     hide_index=True)
    else:
        st.info("The selected runs recorded no temperature grid (calibration.json is absent or empty).")
