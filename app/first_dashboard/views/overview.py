"""Overview: the metric table with CIs (sortable, downloadable), ECE against accuracy, ID vs OOD."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from first_dashboard.data import Selection
from first_dashboard.widgets import chart, download
from first_eval.plots import METRIC_LABELS, ece_accuracy_figure, id_ood_figure

TABLE_METRICS = ("accuracy", "ece", "mce", "rms_ce", "debiased_ece", "smooth_ece", "brier", "nll", "auroc", "aurc",
                 "acc_at_80", "classwise_ece")
HEADLINE = ("accuracy", "ece", "brier", "nll", "auroc")  # the report's headline table


def metric_table(results: list[dict], roles: dict[str, str], metrics=TABLE_METRICS) -> pd.DataFrame:
    """One row per (model, dataset); a ``<metric> 95% CI`` text column beside each metric that has one."""
    rows = []
    for r in results:
        row = {"model": r["model"], "dataset": r["dataset"], "role": roles.get(r["dataset"], ""),
               "n": r.get("n")}
        for m in metrics:
            if m in r:
                row[m] = r[m]
                ci = r.get(f"{m}_ci")
                if ci and len(ci) == 2 and None not in ci:
                    row[f"{m}_ci"] = f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def render(sel: Selection) -> None:
    st.header("Overview")
    results = [r for r in sel.results if r["model"] in sel.models]
    if not results:
        st.info("metrics.json of the selected runs has no rows for these models and datasets.")
        return
    present = [m for m in TABLE_METRICS if any(m in r for r in results)]
    columns = st.multiselect("Metrics", present, default=[m for m in HEADLINE if m in present],
                             format_func=lambda m: METRIC_LABELS.get(m, m), key="ov_columns")
    table = metric_table(results, sel.roles, columns or present)
    config = {}
    for m in TABLE_METRICS:
        config[m] = st.column_config.NumberColumn(METRIC_LABELS.get(m, m), format="%.4f")
        config[f"{m}_ci"] = st.column_config.TextColumn(f"{METRIC_LABELS.get(m, m)} 95% CI")
    st.dataframe(table, hide_index=True, column_config=config)
    st.caption("Click a column header to sort. Lower is better for ECE, MCE, RMS-CE, Brier, NLL, AURC; "
               "higher for accuracy and AUROC. CIs: bootstrap, as stored in metrics.json.")
    download("Download metric table (CSV)", metric_table(results, sel.roles), "metrics.csv", key="dl_metrics")

    left, right = st.columns(2)
    with left:
        chart(ece_accuracy_figure(results, colors=sel.colors), key="ov_scatter")
    with right:
        metrics = present
        metric = st.selectbox("Metric by dataset role", metrics, index=metrics.index("ece") if "ece" in metrics else 0,
                              format_func=lambda m: METRIC_LABELS.get(m, m), key="ov_metric")
        chart(id_ood_figure(results, sel.roles, metric=metric, colors=sel.colors), key="ov_idood")
