"""The page: sidebar (runs, models, datasets, view) and dispatch to one view per rerun."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from first_dashboard.data import LoadError, build_selection, discover, reports_dir, run_summary
from first_dashboard.text import esc
from first_dashboard.views import VIEWS
from first_eval import rundir
from first_eval.plots import model_colors


def render_empty(reports: Path) -> None:
    st.title("FIRST dashboard")
    if not reports.exists():
        where = "does not exist"
    elif rundir.is_run_dir(reports):
        where = "is a run directory that could not be read"
    else:
        where = "holds no run directories"
    st.info(f"The reports directory {esc(str(reports))} {where}.")
    st.markdown(
        "Make a run first — the default study, end to end:\n\n"
        "```\nmake demo\n```\n\n"
        "or your own study with `first-eval run --config FILE --out reports/NAME`, then reload this page. "
        "To point the dashboard elsewhere: `streamlit run app/main.py -- --reports DIR` (a folder of runs, "
        "or one run directory).\n\n"
        "To try the dashboard on made-up numbers: `python -m first_eval.synthetic reports/synthetic-demo` "
        "(a SYNTHETIC run, not a measurement)."
    )


def _default_run(refs) -> tuple[list[str], list[str]]:
    """([the newest run that loads], [names of newer runs that failed to load])."""
    broken = []
    for ref in refs:
        if isinstance(run_summary(*ref.key), LoadError):
            broken.append(ref.name)
        else:
            return [ref.name], broken
    return [], broken


def main() -> None:
    st.set_page_config(page_title="FIRST dashboard", page_icon="📐", layout="wide")
    reports = reports_dir()
    refs, refused = discover(reports)
    for message in refused:
        st.error(esc(message))
    if not refs:
        render_empty(reports)
        return

    st.sidebar.title("FIRST dashboard")
    single = refs[0].path == refs[0].root  # --reports named one run directory
    st.sidebar.caption(f"{'Run' if single else 'Runs in'} {esc(str(reports))}")
    by_name = {ref.name: ref for ref in refs}
    if "runs" not in st.session_state:
        st.session_state["runs"], st.session_state["_skipped"] = _default_run(refs)
    picked = st.sidebar.multiselect("Runs", list(by_name), key="runs",
                                    help="Newest first. Several runs: models are labelled `model [run]`.")
    chosen = []
    shown = [n for n in st.session_state.get("_skipped", []) if n in by_name and n not in picked]
    for name in shown + picked:
        summary = run_summary(*by_name[name].key)
        if isinstance(summary, LoadError):
            st.error(f"Run {esc(name)} could not be loaded: {esc(summary.message)}")
        elif name in picked:
            chosen.append((by_name[name], summary))
    if not chosen:
        st.title("FIRST dashboard")
        st.info("Pick a run in the sidebar.")
        return

    sel = build_selection(reports, chosen)
    if st.session_state.get("_labels") != sel.labels:  # a new run selection resets the model/dataset picks
        st.session_state["_labels"] = sel.labels
        st.session_state["models"] = list(sel.labels)
        st.session_state["datasets"] = list(sel.datasets)
    sel.models = st.sidebar.multiselect("Models", sel.labels, key="models")
    sel.datasets = st.sidebar.multiselect("Datasets", sel.datasets, key="datasets",
                                          format_func=lambda d: f"{d} ({sel.roles[d]})" if sel.roles.get(d) else d)
    sel.colors = model_colors(sel.labels)
    if "view" not in st.session_state:  # ?view=Items opens a view directly (links, screenshots)
        asked = st.query_params.get("view")
        st.session_state["view"] = asked if asked in VIEWS else next(iter(VIEWS))
    view = st.sidebar.radio("View", list(VIEWS), key="view")
    st.query_params["view"] = view
    st.sidebar.caption("Reads run files only; never runs a model.")

    for name in sel.synthetic_runs:
        st.warning(f"Run {esc(name)} is SYNTHETIC (made by first_eval.synthetic for tests and demos): "
                   "its numbers are not measurements of any model.")
    if not sel.models or not sel.datasets:
        st.info("Pick at least one model and one dataset in the sidebar.")
        return
    VIEWS[view](sel)
