"""The pipeline's optional last stage: score its models with the scorer and compute the metrics.

Each model is scored by :class:`first_eval.scorer.Scorer` (the same prompts and option-letter
tokens training used) on each evaluation dataset; its rows go to ``eval/<model>.jsonl`` (the
predictions table) with ``eval/<model>.json`` recording the inputs hash, so a model whose weights
and datasets are unchanged is not scored again. ``eval/predictions.jsonl`` holds all rows and
``eval/metrics.json`` the ``first-eval metrics --json`` results of every (model, dataset).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["run_evaluation"]


def _dataset_label(ds: dict[str, Any]) -> str:
    return ds.get("label") or f"{ds['name']}:{ds.get('split') or 'test'}"


def run_evaluation(models: dict[str, str], spec: Any, template: str, out: str | Path) -> dict[str, Any]:
    """Score ``models`` (name → spec) on ``spec.datasets``; write predictions and metrics under ``out``.

    Returns ``{"results": [metric rows], "skipped": bool}``.
    """
    from first_eval.data import load_dataset
    from first_eval.digest import code_version, content_hash, items_digest, model_digest
    from first_eval.fileio import write_json_atomic
    from first_eval.predictions import read_predictions, to_frame, write_predictions
    from first_eval.results import compute_results

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # The items, not the datasets' names, are what a model's predictions depend on.
    datasets = [(_dataset_label(ds), load_dataset(ds["name"], split=ds.get("split") or "test", limit=ds.get("limit")))
                for ds in spec.datasets]
    data_key = [(label, items_digest(items)) for label, items in datasets]
    all_rows: list[dict[str, Any]] = []
    scored_any = False
    for name, model_spec in models.items():
        inputs = content_hash({"code": code_version("score"), "model": model_digest(model_spec),
                               "datasets": data_key, "template": template})
        marker, table = out / f"{name}.json", out / f"{name}.jsonl"
        if marker.is_file() and table.is_file() and json.loads(marker.read_text()).get("inputs_hash") == inputs:
            all_rows.extend(read_predictions(table).to_dict("records"))
            continue
        rows = _score_model(model_spec, datasets, template, name)
        write_predictions(rows, table)
        write_json_atomic(marker, {"inputs_hash": inputs, "model": model_spec})
        all_rows.extend(rows)
        scored_any = True
    frame = to_frame(all_rows)
    write_predictions(frame, out / "predictions.jsonl")
    results = compute_results(frame, n_bins=10, scheme="width", bootstrap=0, seed=0)
    write_json_atomic(out / "metrics.json", {"results": results})
    return {"results": results, "skipped": not scored_any}


def _score_model(model_spec: str, datasets: list[tuple[str, list]], template: str, name: str) -> list[dict[str, Any]]:
    import os

    from first_eval.scorer import Scorer
    from first_eval.zoo import load_model

    model, tokenizer = load_model(model_spec)
    scorer = Scorer(model, tokenizer, template=template, progress=int(os.environ.get("RANK", "0")) == 0)
    rows = []
    for label, items in datasets:
        rows.extend(s.as_row(model=name, dataset=label) for s in scorer.score(items))
    return rows
