"""``first-train extract`` — the teacher's top-k at every response position, into a store."""

from __future__ import annotations

import typer

from first_train.commands import command_from_config, echo
from first_train.config import ExtractConfig


def extract(cfg: ExtractConfig) -> None:
    """Run the teacher once and store its top-k token ids and probabilities at every response position.

    The store (manifest.json + safetensors shards, 16 bytes a position at k=5) is resumable after a kill; under `accelerate launch` every process writes its own shard.

    Example: first-train extract --teacher runs/teacher --dataset countries --split train --k 5 --out runs/store
    """
    from first_train.extract import run_extract

    result = run_extract(cfg)
    if result.skipped:
        echo(f"{result.out}: already extracted with these settings ({result.n_sequences} sequences, "
             f"{result.n_positions} positions); nothing to do")
        return
    echo(f"{result.out}: {result.n_sequences} sequences, {result.n_positions} positions at k={cfg.k} "
         f"({result.new_positions} new, {result.positions_per_second:.1f} positions/s)")


def register(app: typer.Typer) -> None:
    app.command("extract")(command_from_config(ExtractConfig, extract))
