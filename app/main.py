"""FIRST dashboard — compare models and runs interactively.

    streamlit run app/main.py -- --reports DIR      # default: reports/

DIR is a folder of the run directories that ``first-eval run`` writes, or one run directory
itself (``--reports reports/default-<timestamp>``: that run alone). Reads nothing outside DIR;
never runs a model. Make a run first with ``make demo``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_APP_DIR = str(Path(__file__).resolve().parent)
if _APP_DIR not in sys.path:  # `streamlit run` adds it; AppTest and plain imports may not
    sys.path.insert(0, _APP_DIR)

from first_dashboard.app import main  # noqa: E402

main()
