"""Controls several views share."""

from __future__ import annotations

import streamlit as st

from first_dashboard.data import Selection

SCHEMES = {"equal-width": "width", "equal-mass": "mass"}


def dataset_picker(sel: Selection, key: str, label: str = "Dataset") -> str:
    return st.selectbox(label, sel.datasets, key=key,
                        format_func=lambda d: f"{d} ({sel.roles[d]})" if sel.roles.get(d) else d)


def binning(key: str) -> tuple[int, str]:
    """Bins slider and equal-width/equal-mass toggle; returns (n_bins, scheme)."""
    left, right = st.columns([2, 1])
    with left:
        n_bins = st.slider("Bins", min_value=5, max_value=30, value=10, step=1, key=f"{key}_bins")
    with right:
        scheme = st.radio("Binning", list(SCHEMES), horizontal=True, key=f"{key}_scheme")
    return int(n_bins), SCHEMES[scheme]


def chart(fig, key: str) -> None:
    """A Plotly figure from first_eval.plots, drawn as the report draws it (no Streamlit theme)."""
    st.plotly_chart(fig, theme=None, key=key, config={"displaylogo": False})


def download(label: str, frame, file_name: str, key: str) -> None:
    """A CSV download of ``frame``, written only when clicked (a large table costs nothing until then)."""
    from first_dashboard.compute import csv_bytes

    st.download_button(label, lambda: csv_bytes(frame), file_name=file_name, mime="text/csv", key=key,
                       on_click="ignore")
