"""Extraction: run the teacher once and keep its top-k at every trained position (issue 4, item 2).

For each sequence the teacher's next-token distribution at the response position (the answer
letter; with ``positions="all"`` every position) is reduced to its ``k`` most likely token ids and
their probabilities and written to a :mod:`first_train.store` (16 bytes a position at k = 5,
against 98,304 for a full fp16 row of SmolLM2's 49,152 tokens). Optionally ``m`` tokens drawn from
the teacher's full distribution are stored too, for RS-KD.

* **Resumable** — the store's writer knows which sequences it has persisted; a re-run skips them.
  Batches are fixed slices of the example list (not re-formed around the skipped ones) and RS-KD
  draws use one generator per sequence, seeded by ``(seed, sequence index)``, so a resumed
  extraction writes the same bytes as an uninterrupted one.
* **Sharded** — under ``accelerate launch`` process ``r`` of ``n`` extracts the ``r``-th contiguous
  block of sequences into its own shard; the last process to finish merges the manifest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from first_eval.errors import UserError
from first_train.config import ExtractConfig
from first_train.data import Example, collate

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ExtractResult", "run_extract", "teacher_batches", "topk_of_logits"]


@dataclass(frozen=True)
class ExtractResult:
    """What an extraction did.

    Attributes
    ----------
    out : Path
        The store directory.
    n_sequences, n_positions : int
        Totals of the finished store.
    new_sequences, new_positions : int
        What this invocation (this process) added; less than the totals after a resume.
    seconds : float
        Wall time of this invocation's teacher passes.
    skipped : bool
        True when ``out`` already held a finished store with the same settings.
    """

    out: Path
    n_sequences: int
    n_positions: int
    new_sequences: int = 0
    new_positions: int = 0
    seconds: float = 0.0
    skipped: bool = False

    @property
    def positions_per_second(self) -> float:
        return self.new_positions / self.seconds if self.seconds > 0 else float("nan")


def teacher_batches(model: torch.nn.Module, examples: Sequence[Example], *, mode: str, batch_size: int,
                    pad_id: int, device: Any = "cpu", progress: bool = False,
                    description: str = "teacher", full_logits: bool = False,
                    ) -> Iterator[tuple[list[Example], torch.Tensor]]:
    """Run ``model`` over ``examples`` in fixed batches; yield ``(batch, logits)``.

    ``logits`` is float32 of shape ``(N, V)``: the kept positions of the batch in row-major order
    (each example's positions in increasing order, examples in batch order). The LM head runs
    only at those positions unless ``full_logits`` (the reference path).
    """
    import torch
    from tqdm.auto import tqdm

    from first_train.data import kept_logits

    bar = tqdm(total=len(examples), desc=description, unit="seq", disable=not progress, dynamic_ncols=True)
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            chunk = list(examples[start:start + batch_size])
            batch = {k: v.to(device) for k, v in collate(chunk, pad_id=pad_id, mode=mode).items()}
            logits = kept_logits(model, batch, full_logits=full_logits)[0].float()
            bar.update(len(chunk))
            yield chunk, logits
    bar.close()


def topk_of_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids int64 (N, k), probs float32 (N, k))``: the k most likely tokens, most likely first."""
    import torch

    values, ids = torch.topk(logits.float(), k, dim=-1)
    return ids, torch.exp(values - torch.logsumexp(logits.float(), dim=-1, keepdim=True))


def run_extract(cfg: ExtractConfig) -> ExtractResult:
    """Extract ``cfg.teacher``'s top-k on ``cfg.dataset``/``cfg.split`` into the store ``cfg.out``."""
    import torch
    from tqdm.auto import tqdm

    from first_eval.fileio import write_json_atomic
    from first_eval.zoo import load_model
    from first_train.data import dataset_fingerprint, load_examples, tokenizer_fingerprint
    from first_train.distill import EXTRACT_RECORD
    from first_eval.digest import code_version, content_hash, model_digest
    from first_train.losses import sample_rs_tokens
    from first_train.store import StoreWriter, TopKStore, finalize_store, shard_range
    from first_train.trainer import process_state

    state = process_state()
    rank, world = state.process_index, state.num_processes
    out = Path(cfg.out)
    model, tokenizer = load_model(cfg.teacher)
    _, examples = load_examples(cfg.dataset, cfg.split, cfg.limit, tokenizer, template=cfg.template)
    settings = dict(teacher=cfg.teacher, tokenizer_hash=tokenizer_fingerprint(tokenizer), k=cfg.k,
                    dataset_hash=dataset_fingerprint(examples), positions=cfg.positions,
                    vocab_size=int(model.get_output_embeddings().weight.shape[0]),
                    rs_samples=cfg.rs_samples or None)
    if cfg.k > settings["vocab_size"]:
        raise UserError(f"--k {cfg.k} is larger than the teacher's vocabulary ({settings['vocab_size']})")

    inputs_hash = content_hash({"stage": "extract", "code": code_version("extract"), "teacher": model_digest(cfg.teacher),
                                "settings": settings, "config": cfg.hashed_dict()})
    previous = _read_json(out / EXTRACT_RECORD)
    if (out / "manifest.json").is_file():
        if previous.get("inputs_hash") == inputs_hash:
            manifest = _read_json(out / "manifest.json")
            return ExtractResult(out, manifest["n_sequences"], manifest["n_positions"], skipped=True)
        if not cfg.overwrite:
            raise UserError(f"{out} holds a store extracted with other settings or another teacher; "
                            "pass --overwrite to replace it or choose another --out")
    elif previous and previous.get("inputs_hash") != inputs_hash and not cfg.overwrite:
        raise UserError(f"{out} holds a partial store extracted with other settings or another teacher; "
                        "pass --overwrite to replace it or choose another --out")
    replace = cfg.overwrite and previous.get("inputs_hash") != inputs_hash
    if state.is_main_process:
        if replace and out.exists():
            import shutil

            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        # What the store's sequences are, so `distill` can rebuild them (the store keeps only ids).
        write_json_atomic(out / EXTRACT_RECORD, {
            "dataset": cfg.dataset, "split": cfg.split, "limit": cfg.limit, "template": cfg.template,
            "teacher": cfg.teacher, "dataset_hash": settings["dataset_hash"], "positions": cfg.positions,
            "inputs_hash": inputs_hash})
    state.wait_for_everyone()

    try:
        writer = StoreWriter(out, shard_index=rank, num_shards=world,
                             sequences_per_shard=cfg.chunk_sequences, **settings)
    except ValueError as exc:  # a partial store written with other settings
        raise UserError(f"{out}: {exc}") from None

    mine = [examples[i] for i in shard_range(len(examples), rank, world)]
    done = writer.done_ids()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.to(state.device).eval()
    # Whole batches already persisted are skipped; a partly persisted one is recomputed as a whole
    # (same batch composition, same numbers) and only its missing sequences are added.
    starts = [b for b in range(0, len(mine), cfg.batch_size)
              if any(e.id not in done for e in mine[b:b + cfg.batch_size])]
    bar = tqdm(total=len(mine), initial=len(mine) - sum(len(mine[b:b + cfg.batch_size]) for b in starts),
               desc=f"extract top-{cfg.k}", unit="seq", dynamic_ncols=True,
               disable=not (cfg.progress and state.is_main_process))
    started, new_sequences, new_positions = time.perf_counter(), 0, 0
    for b in starts:
        chunk = mine[b:b + cfg.batch_size]
        (batch, logits), = teacher_batches(model, chunk, mode=cfg.positions, batch_size=len(chunk),
                                           pad_id=pad_id, device=state.device, full_logits=cfg.full_logits)
        ids, probs = topk_of_logits(logits, cfg.k)
        row = 0
        for e in batch:
            positions = e.positions(cfg.positions)
            n = len(positions)
            rs = {}
            if cfg.rs_samples:
                generator = torch.Generator(device=logits.device).manual_seed(cfg.seed * 1_000_003 + e.index)
                rs_ids, rs_w = sample_rs_tokens(logits[row:row + n], cfg.rs_samples, generator=generator)
                rs = {"rs_ids": rs_ids.cpu(), "rs_weights": rs_w.cpu()}
            if writer.add(e.id, ids[row:row + n].cpu(), probs[row:row + n].cpu(), start=positions[0], **rs):
                new_sequences += 1
                new_positions += n
            row += n
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - started
    writer.close(finalize=False)
    state.wait_for_everyone()
    if state.is_main_process:
        finalize_store(out)
    state.wait_for_everyone()
    store = TopKStore(out)
    return ExtractResult(out, len(store), store.n_positions, new_sequences, new_positions, seconds)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
