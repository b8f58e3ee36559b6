"""Fixtures for the dashboard tests: small SYNTHETIC run directories (first_eval.synthetic)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from first_eval.synthetic import make_synthetic_run

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app" / "main.py"
sys.path.insert(0, str(ROOT / "app"))  # first_dashboard and screenshot, as `streamlit run` sees them

MODELS = ("base", "teacher", "student-first")


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> Path:
    """One tiny synthetic run (3 models × 3 datasets × 60 items) with hostile text in one item."""
    reports = tmp_path_factory.mktemp("reports")
    return make_synthetic_run(reports / "synthetic-tiny", models=MODELS, n_items=60, seed=3, bootstrap=50,
                              hostile_text=True)


@pytest.fixture(scope="session")
def reports(synthetic_run) -> Path:
    return synthetic_run.parent
