"""Items: filter (confidently wrong, subject, dataset, text), read the prompt and the probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from first_dashboard.compute import LETTERS, format_probs
from first_dashboard.data import Selection
from first_dashboard.widgets import download

MAX_ROWS = 1000
SHOW = ("confidently wrong", "wrong", "right", "all")


def item_frame(sel: Selection, label: str, datasets: list[str]) -> pd.DataFrame:
    """One row per item the model answered on ``datasets``, with the item's text columns."""
    parts = []
    for ds in datasets:
        g = sel.group(label, ds)
        if g is None:
            continue
        pred = g.predictions
        frame = pd.DataFrame({
            "dataset": ds, "id": g.ids, "gold": [LETTERS[i] for i in g.labels],
            "answer": [LETTERS[i] for i in pred], "confidence": g.confidence, "correct": g.correct,
            "probabilities": format_probs(g.probs, g.n_options),
        })
        items = sel.items(label, ds)
        if items is not None:
            extra = items.reindex(frame["id"])
            for col in ("subject", "prompt"):
                if col in extra.columns:
                    frame[col] = extra[col].to_numpy()
        parts.append(frame)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def render(sel: Selection) -> None:
    st.header("Items")
    c1, c2, c3 = st.columns([1, 2, 1])
    with c1:
        label = st.selectbox("Model", sel.models, key="it_model")
    with c2:
        datasets = st.multiselect("Datasets", sel.datasets, default=sel.datasets, key="it_datasets")
    with c3:
        show = st.selectbox("Show", SHOW, key="it_show")
    frame = item_frame(sel, label, datasets)
    if frame.empty:
        st.info("No predictions for this model on these datasets.")
        return
    c1, c2, c3 = st.columns([1, 2, 1])
    with c1:
        threshold = st.slider("Confident means ≥", 0.5, 1.0, 0.8, 0.05, key="it_threshold",
                              disabled=show != "confidently wrong")
    with c2:
        subjects = sorted(frame["subject"].dropna().astype(str).unique()) if "subject" in frame else []
        chosen_subjects = st.multiselect("Subjects (none = all)", subjects, key="it_subjects")
    with c3:
        query = st.text_input("Text contains", key="it_query", help="Plain substring of the id or prompt.")

    mask = np.ones(len(frame), dtype=bool)
    if show == "confidently wrong":
        mask &= (~frame["correct"].to_numpy()) & (frame["confidence"].to_numpy() >= threshold)
    elif show == "wrong":
        mask &= ~frame["correct"].to_numpy()
    elif show == "right":
        mask &= frame["correct"].to_numpy()
    if chosen_subjects:
        mask &= frame["subject"].astype(str).isin(chosen_subjects).to_numpy()
    if query:
        hay = frame["id"].astype(str)
        if "prompt" in frame:
            hay = hay + "\n" + frame["prompt"].fillna("").astype(str)
        mask &= hay.str.contains(query, case=False, regex=False).to_numpy()
    shown = frame[mask].sort_values("confidence", ascending=False, kind="stable")

    st.caption(f"{len(shown)} of {len(frame)} items"
               + (f"; the {MAX_ROWS} most confident shown, all in the CSV" if len(shown) > MAX_ROWS else "")
               + ". Sorted by confidence.")
    st.dataframe(shown.head(MAX_ROWS), hide_index=True, column_config={
        "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="%.3f"),
        "prompt": st.column_config.TextColumn("prompt", width="large"),
    })
    download("Download filtered items (CSV)", shown, "items.csv", key="dl_items")

    if shown.empty:
        return
    st.subheader("One item")
    keys = list(zip(shown["dataset"].head(MAX_ROWS), shown["id"].head(MAX_ROWS)))
    pick = st.selectbox("Item", range(len(keys)), format_func=lambda i: f"{keys[i][1]} ({keys[i][0]})",
                        key="it_pick")
    ds, item_id = keys[min(pick, len(keys) - 1)]
    row = shown[(shown["dataset"] == ds) & (shown["id"] == item_id)].iloc[0]
    if "prompt" in shown and isinstance(row.get("prompt"), str):
        st.text("Prompt (as the model saw it):")
        st.code(row["prompt"], language=None, wrap_lines=True)
    answers = []
    for other in sel.models:
        g = sel.group(other, ds)
        if g is None:
            continue
        hit = np.flatnonzero(g.ids == item_id)
        if len(hit):
            i = int(hit[0])
            rec = {"model": other}
            rec.update({LETTERS[j]: float(g.probs[i, j]) for j in range(int(g.n_options[i]))})
            rec["answer"] = LETTERS[int(g.predictions[i])]
            rec["correct"] = bool(g.correct[i])
            answers.append(rec)
    st.text(f"Gold answer: {row['gold']}. Option probabilities of every selected model:")
    st.dataframe(pd.DataFrame(answers), hide_index=True,
                 column_config={L: st.column_config.NumberColumn(format="%.3f") for L in LETTERS})
