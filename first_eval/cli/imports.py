"""``first-eval import lm-eval|openai`` — predictions tables from files other tools wrote.

NumPy and pandas only (like ``first-eval metrics``): the importers read the harness' and the
servers' JSON; neither lm-eval nor openai is imported.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

import_app = typer.Typer(
    name="import",
    help="Convert predictions from lm-evaluation-harness or an OpenAI-compatible server into a predictions table.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Reading(str, Enum):
    acc = "acc"
    acc_norm = "acc_norm"


def _write(result, out: Path) -> None:
    from first_eval.predictions import write_predictions

    for line in result.notes:
        typer.echo(line, err=True)
    path = write_predictions(result.frame, out)
    frame = result.frame
    groups = frame.groupby(["model", "dataset"], sort=False).size()
    summary = ", ".join(f"{d} ({n})" for (_, d), n in groups.items())
    models = ", ".join(dict.fromkeys(frame["model"]))
    typer.echo(f"wrote {len(frame)} predictions of {models} to {path}: {summary}")


@import_app.command("lm-eval")
def lm_eval(
    paths: Annotated[list[Path], typer.Argument(
        help="lm-eval output directories (--output_path with --log_samples), results_*.json or "
             "samples_<task>_*.jsonl files.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions table to write (.jsonl or .parquet).",
                                      show_default=False)],
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Model name for the rows (default: the results file's model_name, else 'lm-eval').")] = None,
    reading: Annotated[Reading, typer.Option(
        "--reading", help="acc: softmax over the choices' log-likelihoods (the harness' acc and brier_score); "
                          "acc_norm: log-likelihoods divided by each choice's character length first.")] = Reading.acc,
    filter_name: Annotated[str, typer.Option(
        "--filter", help="Which of the harness' filters to read (multiple-choice tasks have 'none').")] = "none",
    task: Annotated[Optional[list[str]], typer.Option(
        "--task", help="Import only these tasks (repeatable; default: every multiple-choice task found).")] = None,
) -> None:
    """Import lm-evaluation-harness samples (multiple-choice tasks) as a predictions table.

    Example:
      lm_eval run --model hf --model_args pretrained=DIR --tasks arc_easy --output_path out --log_samples
      first-eval import lm-eval out --out preds.jsonl
      first-eval report --predictions preds.jsonl --out reports/arc
    """
    from first_eval.imports.lm_eval import read_lm_eval

    reading_name = reading.value if isinstance(reading, Reading) else str(reading)
    _write(read_lm_eval(paths, model=model, reading=reading_name, filter_name=filter_name, tasks=task), out)


@import_app.command("openai")
def openai(
    file: Annotated[Path, typer.Argument(
        help="JSONL: one item per line with its raw chat-completions or completions response "
             "(requested with logprobs), as examples/query_openai.py writes.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions table to write (.jsonl or .parquet).",
                                      show_default=False)],
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Model name for the rows (default: the line's 'model', else the response's).")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", help="Dataset name for the rows (default: the line's 'dataset', else the file's stem).")] = None,
) -> None:
    """Import OpenAI-compatible responses with top logprobs as a predictions table.

    The option probabilities are the answer token's top logprobs over the option letters,
    renormalized; a letter missing from the top-k gets the smallest listed probability.

    Example:
      python examples/query_openai.py --base-url http://localhost:8080/v1 --model m --data items.jsonl --out r.jsonl
      first-eval import openai r.jsonl --out preds.jsonl
    """
    from first_eval.imports.openai import read_openai

    _write(read_openai(file, model=model, dataset=dataset), out)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
