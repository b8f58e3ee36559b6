"""Importers: predictions tables from files that other tools wrote.

* :mod:`first_eval.imports.lm_eval` — lm-evaluation-harness ``--log_samples`` output
  (``samples_<task>_*.jsonl``, ``results_*.json`` or the output directory holding them);
* :mod:`first_eval.imports.openai` — OpenAI-compatible chat-completions / completions responses
  requested with ``logprobs`` (vLLM, TGI, llama.cpp server, hosted APIs).

Each returns an :class:`ImportResult`: the rows in the predictions-table schema
(:mod:`first_eval.predictions`) and the lines the command prints about what it read, skipped or
imputed. ``first-eval import …`` writes the rows with
:func:`~first_eval.predictions.write_predictions` (validated, atomic). Neither module imports
torch, transformers, lm-eval or openai: they read the files those tools write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["ImportResult"]


@dataclass
class ImportResult:
    """What an importer read.

    Attributes
    ----------
    frame : DataFrame
        Predictions rows (``model``, ``dataset``, ``id``, ``probs``, ``label`` and optional
        columns), not yet validated: the caller writes them with ``write_predictions``.
    notes : list of str
        One line each about what was skipped, imputed or assumed, for the command to print.
    """

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
