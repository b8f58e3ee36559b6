"""The dashboard on a run made from imported predictions alone (`first-eval report --predictions`):
real lm-eval output, no trajectory, no knowledge, no calibration file."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import APP
from first_eval.imports.lm_eval import read_lm_eval
from first_eval.predictions import write_predictions
from first_eval.report.from_predictions import write_predictions_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval"
VIEWS = ("Overview", "Reliability", "Compare", "Items", "Training", "Concentrated knowledge", "What-if")


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imported")
    plain, chat = root / "plain.jsonl", root / "chat.jsonl"
    write_predictions(read_lm_eval([FIXTURES / "v0.4.13"], model="smollm2-plain").frame, plain)
    write_predictions(read_lm_eval([FIXTURES / "v0.4.13-chat"], model="smollm2-chat").frame, chat)
    run = root / "reports" / "lm-eval"
    write_predictions_run([plain, chat], run, bootstrap=50)
    return run


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_renders_an_imported_run(imported_run, monkeypatch, view):
    monkeypatch.setenv("FIRST_REPORTS_DIR", str(imported_run))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["view"] = view
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if view in ("Overview", "Reliability", "Compare"):
        assert at.get("plotly_chart"), view
