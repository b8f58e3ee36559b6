"""Concentrated knowledge: mass@k curves, the mass@5 distribution, KL and bytes against k."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from first_dashboard.data import Selection
from first_dashboard.widgets import chart
from first_eval.plots import kl_bytes_figure, knowledge_summaries, mass_at_k_figure, mass_distribution_figure


def summary_table(summaries: dict) -> pd.DataFrame:
    rows = []
    for label, s in summaries.items():
        mass = s.get("mass_mean") or []
        share = s.get("share_mass_over_0_95") or []
        nbytes = s.get("bytes_per_position") or []
        row = {"model · positions": label, "positions counted": s.get("n_positions")}
        for k in (1, 5, 10, 20):
            if len(mass) >= k:
                row[f"mass@{k}"] = mass[k - 1]
        if len(share) >= 5:
            row["share with mass@5 > 0.95"] = share[4]
        if len(nbytes) >= 5:
            row["bytes/position at k=5"] = nbytes[4]
        if s.get("full_row_bytes_fp16"):
            row["full fp16 row bytes"] = s["full_row_bytes_fp16"]
        rows.append(row)
    return pd.DataFrame(rows)


def render(sel: Selection) -> None:
    st.header("Concentrated knowledge")
    entries = [e for e in sel.knowledge["models"] if e.get("model") in sel.models]
    summaries = knowledge_summaries({"models": entries})
    if not summaries:
        st.info("The selected runs have no concentrated-knowledge study (knowledge.json is absent, or it "
                "covers none of the selected models). `first-eval knowledge --model SPEC --dataset D` makes one.")
        return
    st.caption("FIRST stores only the teacher's top-k tokens per position, arguing that the top 5 carry "
               "more than 95% of the probability mass. Band: interquartile range over positions.")
    chart(mass_at_k_figure(summaries), key="kn_mass")
    st.dataframe(summary_table(summaries), hide_index=True)
    left, right = st.columns(2)
    with left:
        chart(mass_distribution_figure(summaries), key="kn_dist")
    with right:
        chart(kl_bytes_figure(summaries), key="kn_kl")
