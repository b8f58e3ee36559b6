"""``first-eval score`` — score a model on a multiple-choice dataset and write the predictions table.

Torch and transformers are imported inside the command only, so importing this module (and
running ``first-eval metrics``) stays NumPy-only.

Under ``accelerate launch`` every process scores its share of the items; the main process
writes the merged table.
"""

from __future__ import annotations

import os
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from first_eval.errors import UserError

_SUFFIXES = (".jsonl", ".parquet")


class Template(str, Enum):
    plain = "plain"
    chat = "chat"


class Strategy(str, Enum):
    first_n = "first_n"
    random = "random"


class DType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


def _dataset_name(dataset: str) -> str:
    """The ``dataset`` column: a built-in's name, or a file's or directory's stem."""
    return Path(dataset).stem if os.path.sep in dataset or Path(dataset).exists() else dataset


def _default_threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // max(1, local))


def score(
    model: Annotated[str, typer.Option(
        "--model", help="Model spec: smollm2-135m, smollm2-135m:layers=0,6,12, a local HF directory, "
        "a .gguf file or a hub id.", show_default=False)],
    dataset: Annotated[str, typer.Option(
        "--dataset", help="Built-in dataset (countries, countries-ood, mmlu), a JSONL file (generic or "
        "CommonsenseQA/ARC layout) or a dataset directory.", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", help="Where to write the predictions table: FILE.jsonl or FILE.parquet (written "
        "atomically).", show_default=False)],
    split: Annotated[Optional[str], typer.Option(
        "--split", help="Split to score (default: the dataset's default split, or every item of a file).")] = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", min=1, help="Score a seeded subset of this many items (stratified by subject).")] = None,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the --limit subset and of --fewshot-strategy random.")] = 0,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Skip malformed dataset records (and report how many) instead of failing.")] = False,
    template: Annotated[Template, typer.Option(
        "--template", help="Prompt: plain 'Question: …\\nA. …\\nAnswer:' or the model's chat template.")]
        = Template.plain,
    shots: Annotated[int, typer.Option(
        "--shots", min=0, help="Worked examples (with answers) placed before every question.")] = 0,
    fewshot_split: Annotated[Optional[str], typer.Option(
        "--fewshot-split", help="Split of the same dataset the --shots examples come from; it must differ "
        "from --split (default: train, else val/validation/dev; items being scored are never used).",
        show_default=False)] = None,
    fewshot_strategy: Annotated[Strategy, typer.Option(
        "--fewshot-strategy", help="first_n: the first K of the split (lm-eval's sampler: first_n); "
        "random: K drawn with --seed.")] = Strategy.first_n,
    batch_tokens: Annotated[Optional[int], typer.Option(
        "--batch-tokens", min=1, help="Token budget of a batch (rows × longest row); default 1024 on CPU, "
        "16384 on GPU.")] = None,
    prefix_cache: Annotated[bool, typer.Option(
        "--prefix-cache/--no-prefix-cache", help="Encode the prompts' shared prefix (the few-shot block, "
        "a chat system turn) once and reuse its KV cache.")] = True,
    option_text: Annotated[bool, typer.Option(
        "--option-text", help="Also read option-text log-likelihoods (lm-eval acc/acc_norm); one more "
        "pass per option.")] = False,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Value of the 'model' column (default: the --model spec).")] = None,
    dataset_name: Annotated[Optional[str], typer.Option(
        "--dataset-name", help="Value of the 'dataset' column (default: the built-in name or the file stem).")]
        = None,
    dtype: Annotated[Optional[DType], typer.Option(
        "--dtype", help="Weights dtype (default: float32).")] = None,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="Torch device (default: cuda if available, else cpu; the process's own "
        "device under accelerate launch).")] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="CPU threads for torch (default: the cores this process may use, "
        "divided among the local processes).")] = None,
    trust_remote_code: Annotated[bool, typer.Option(
        "--trust-remote-code", help="Allow a model's own Python code to run (off unless asked).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Score a model on multiple-choice questions: one forward pass per question.

    Writes one row per item (option probabilities, option mass, full-vocabulary top-1, the exact prompt), readable by `first-eval metrics`.

    Example: first-eval score --model smollm2-135m --dataset countries --limit 100 --shots 5 --out countries.jsonl
    """  # noqa: E501
    if out.suffix.lower() not in _SUFFIXES:
        raise UserError(f"--out {out}: expected a .jsonl or .parquet file name")
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out}: is a directory; expected a .jsonl or .parquet file name")

    from first_eval.data import fewshot_pool, load_dataset
    from first_eval.prompts import select_fewshot

    items = load_dataset(dataset, split=split, limit=limit, seed=seed, skip_invalid=skip_invalid)
    if not items:
        raise UserError(f"{dataset}: no items to score" + (f" in split {split!r}" if split else ""))
    fewshot = []
    if shots:
        scored_ids = [it.id for it in items]
        pool = fewshot_pool(dataset, scored_split=split, scored_ids=scored_ids, split=fewshot_split,
                            skip_invalid=skip_invalid)
        fewshot = select_fewshot(pool, shots, strategy=fewshot_strategy.value, seed=seed,
                                 exclude_ids=scored_ids)

    import torch

    from first_eval.predictions import write_predictions
    from first_eval.scorer import Scorer, process_state
    from first_eval.zoo import load_model

    torch.set_num_threads(threads or _default_threads())
    lm, tokenizer = load_model(model, trust_remote_code=trust_remote_code,
                               dtype=dtype.value if dtype else None)
    state = process_state()
    target = device or (str(state.device) if state else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        lm = lm.to(target)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"--device {target}: {exc}") from None

    scorer = Scorer(lm, tokenizer, template=template.value, fewshot=fewshot, batch_tokens=batch_tokens,
                    cache_prefix=prefix_cache, option_text=option_text, progress=progress)
    start = time.perf_counter()
    scores = scorer.score(items)
    seconds = time.perf_counter() - start
    if state is not None and not state.is_main_process:
        return
    column = dataset_name or _dataset_name(dataset)
    write_predictions([s.as_row(model=name or model, dataset=column) for s in scores], out)
    accuracy = sum(s.prediction == s.label for s in scores) / len(scores)
    mass = sum(s.option_mass for s in scores) / len(scores)
    typer.echo(f"wrote {len(scores)} predictions to {out} — accuracy {accuracy:.3f}, mean option mass "
               f"{mass:.3f}, {len(scores) / seconds:.1f} questions/s")


def register(app: typer.Typer) -> None:
    app.command("score")(score)
