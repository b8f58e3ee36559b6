"""The training loop shared by ``finetune`` and ``distill``, on 🤗 Accelerate.

One loop, three scales: a single CPU process, one GPU, and ``accelerate launch`` with several
processes (DDP; FSDP through an accelerate config file). What the loop owns:

* **Data order** — a seeded permutation per epoch, cut into global batches of
  ``batch_size × world_size`` rows; rank ``r`` takes its slice. Optimizer step ``s`` always uses
  micro-batches ``s·grad_accum … s·grad_accum + grad_accum − 1`` of that stream, so the data a step
  sees depends only on ``(seed, step)`` — which is what makes resuming exact.
* **Gradient accumulation** — manual, with ``accelerator.no_sync`` on all but the last micro-batch.
* **Checkpoints** — every ``save_every`` steps, ``out/checkpoints/step-NNNNNN/`` is an ordinary
  Hugging Face directory (``config.json``, ``model.safetensors``, tokenizer) that
  :func:`first_eval.zoo.load_model` and the scorer read, plus ``resume/`` with
  ``accelerator.save_state`` (model, optimizer, scheduler, every rank's RNG) and
  ``trainer_state.json`` (step, loss history, run hash). A checkpoint is written under a temporary
  name and renamed, so a kill never leaves a half checkpoint that looks whole. Only the newest
  checkpoint keeps its ``resume/`` state.
* **Resume** — a run started again with the same settings continues from the newest checkpoint and
  ends with the same weights as an uninterrupted run (tested bit for bit on CPU).
* **Output** — the final model in ``out/`` itself, and ``out/first_train.json`` (written last,
  atomically) with the run hash, loss per step and timings. A finished run with the same hash is
  not repeated (even with ``overwrite``); one with other settings is refused unless ``overwrite``.

The objective (what a batch's loss is) comes from the caller, so fine-tuning and every
distillation loss share this loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from first_eval.errors import UserError
from first_eval.faults import crash_point
from first_eval.fileio import fsync_dir, fsync_tree, write_json_atomic
from first_train.config import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from accelerate import Accelerator

__all__ = [
    "DONE_FILE",
    "Objective",
    "TrainResult",
    "batch_schedule",
    "example_length",
    "finished_run",
    "freeze_all_but_top_layers",
    "latest_checkpoint",
    "make_accelerator",
    "process_state",
    "train",
]

FORMAT_VERSION = 1
DONE_FILE = "first_train.json"
_STARTED_FILE = ".first-train-run.json"
_CKPT_DIR = "checkpoints"
_RESUME_DIR = "resume"
_STATE_FILE = "trainer_state.json"
LENGTH_GROUP = 16  # global batches per length bucket (--group-by-length)


class Objective(Protocol):
    """``objective(model, batch) -> scalar loss`` for one micro-batch (tensors already on device)."""

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor: ...


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes
    ----------
    out : Path
        The output directory (an HF model directory).
    steps : int
        Optimizer steps taken in total (including those before a resume).
    losses : tuple of float
        Mean training loss of every optimizer step (averaged over micro-batches and processes).
    resumed_from : int or None
        The checkpoint step this invocation resumed from.
    skipped : bool
        True when ``out`` already held a finished run with the same settings (nothing was done).
    seconds : float
        Wall time of this invocation's training loop.
    replica_fingerprints : tuple of str
        SHA-256 of every process's final weights (DDP replicas must agree); empty under FSDP.
    """

    out: Path
    steps: int
    losses: tuple[float, ...]
    resumed_from: int | None = None
    skipped: bool = False
    seconds: float = 0.0
    replica_fingerprints: tuple[str, ...] = ()


# ------------------------------------------------------------------------------- pieces


def make_accelerator() -> Accelerator:
    """An :class:`accelerate.Accelerator` configured by the environment (``accelerate launch``).

    Plain ``python``: one process on the GPU if there is one, else the CPU. Under ``accelerate
    launch`` the launcher's settings (processes, DDP/FSDP, mixed precision) apply; on CPU use
    ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N …`` for gloo DDP.
    """
    from accelerate import Accelerator

    return Accelerator()


def process_state():
    """Accelerate's process state (rank, world size, device) for the non-training stages.

    Without a GPU, ``PartialState()`` under ``accelerate launch`` would quietly stay a single
    process; asking for the CPU backend joins the gloo group the launcher set up.
    """
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def batch_schedule(n_items: int, *, batch_size: int, world_size: int, rank: int, seed: int, epoch: int,
                   lengths: Sequence[int] | None = None, group: int = LENGTH_GROUP) -> list[list[int]]:
    """This rank's micro-batches (lists of item indices) for one epoch.

    A seeded permutation of ``range(n_items)`` is padded cyclically to a whole number of global
    batches (``batch_size * world_size`` rows), so every rank gets the same number of equally
    sized micro-batches; rank ``r`` takes rows ``[r*batch_size, (r+1)*batch_size)`` of each.

    With ``lengths`` (``--group-by-length``), batches come from length buckets: the padded
    permutation is cut into groups of ``group`` global batches, each group is sorted by length
    (longest first, ties in permutation order) and cut into global batches, and the batches of
    the epoch are then put in a second seeded random order. Every item is still seen once per
    epoch (plus the cyclic padding), the batches of an epoch depend only on ``(seed, epoch)``,
    and a batch holds items of similar length, so there is little padding.

    Examples
    --------
    >>> batch_schedule(5, batch_size=2, world_size=1, rank=0, seed=0, epoch=0)
    [[4, 0], [1, 3], [2, 4]]
    >>> batch_schedule(6, batch_size=2, world_size=1, rank=0, seed=0, epoch=0, lengths=[1, 5, 2, 6, 3, 4])
    [[3, 1], [2, 0], [5, 4]]
    """
    import torch

    if n_items < 1:
        raise UserError("no training examples")
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    perm = torch.randperm(n_items, generator=generator).tolist()
    global_batch = batch_size * world_size
    n_batches = math.ceil(n_items / global_batch)
    need = n_batches * global_batch
    padded = (perm * math.ceil(need / n_items))[:need]
    if lengths is not None:
        if len(lengths) != n_items:
            raise ValueError(f"Expected {n_items} lengths, got {len(lengths)}")
        span = global_batch * max(1, int(group))
        grouped: list[int] = []
        for g in range(0, need, span):
            grouped += sorted(padded[g:g + span], key=lambda i: -lengths[i])  # stable: ties keep their order
        batches = [grouped[b * global_batch:(b + 1) * global_batch] for b in range(n_batches)]
        padded = [i for b in torch.randperm(n_batches, generator=generator).tolist() for i in batches[b]]
    return [padded[b * global_batch + rank * batch_size: b * global_batch + (rank + 1) * batch_size]
            for b in range(n_batches)]


def _adamw(params: list[Any], cfg: TrainConfig):
    """AdamW over ``params``: torch's fused kernel unless ``--no-fused-adamw``."""
    import torch

    if not cfg.fused_adamw:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"the fused AdamW kernel is not available here ({exc}); pass --no-fused-adamw") from None


def example_length(example: Any) -> int:
    """Tokens of a training example (an :class:`~first_train.data.Example` or a row wrapping one)."""
    from first_train.data import example_tokens

    return len(example_tokens(example))


def freeze_all_but_top_layers(model: torch.nn.Module, n_layers: int) -> int:
    """Freeze every weight except the last ``n_layers`` decoder layers and the final norm.

    The LM head stays trainable only when it is not tied to the input embeddings (SmolLM2 ties
    them, so there the head is frozen with the embeddings). Returns the number of trainable
    parameters.
    """
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise UserError(f"--train-top-layers: {type(model).__name__} has no decoder layer list")
    if n_layers > len(layers):
        raise UserError(f"--train-top-layers {n_layers}: the model has only {len(layers)} layers")
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = list(layers[len(layers) - n_layers:])
    if getattr(decoder, "norm", None) is not None:
        trainable.append(decoder.norm)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    if head is not None and not tied:
        trainable.append(head)
    for module in trainable:
        for p in module.parameters():
            p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps of a run: ``max_steps``, else ``ceil(epochs · batches / grad_accum)``."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum))


def _checkpoints(out: Path) -> list[tuple[int, Path]]:
    root = out / _CKPT_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit():
            found.append((int(p.name[5:]), p))
    return sorted(found)


def latest_checkpoint(out: str | os.PathLike) -> tuple[int, Path] | None:
    """The newest checkpoint of ``out`` that can be resumed from: ``(step, directory)`` or None."""
    for step, path in reversed(_checkpoints(Path(out))):
        if (path / _RESUME_DIR / _STATE_FILE).is_file():
            return step, path
    return None


def finished_run(out: str | os.PathLike) -> dict[str, Any] | None:
    """The ``first_train.json`` record of a finished run in ``out``, or None."""
    marker = Path(out) / DONE_FILE
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _byte_dtype():
    import torch

    return torch.uint8


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


# ------------------------------------------------------------------------------- the run directory


def _prepare_out(out: Path, run_hash: str, cfg: TrainConfig, accelerator: Accelerator) -> str:
    """Decide what to do with ``out``: ``"done"``, ``"resume"`` or ``"fresh"`` (after any cleanup).

    The main process decides and tells the others, so every rank raises the same error.
    """
    decision = "fresh"
    if accelerator.is_main_process:
        try:
            decision = _decide(out, run_hash, cfg)
        except UserError as exc:
            decision = "error:" + str(exc)
    decision = _broadcast(decision, accelerator)
    if decision.startswith("error:"):
        raise UserError(decision[len("error:"):])
    return decision


def _decide(out: Path, run_hash: str, cfg: TrainConfig) -> str:
    done = finished_run(out)
    started = out / _STARTED_FILE
    claimed = json.loads(started.read_text()).get("run_hash") if started.is_file() else None
    foreign = out.is_dir() and any(out.iterdir()) and done is None and claimed is None
    if done is not None and done.get("run_hash") == run_hash:
        return "done"
    if (done is not None or claimed not in (None, run_hash) or foreign) and not cfg.overwrite:
        what = "a finished run" if done is not None else ("another run" if claimed else "other files")
        raise UserError(f"{out} holds {what} with different settings; pass --overwrite to replace it "
                        "or choose another --out")
    if out.is_dir() and (cfg.overwrite or (not cfg.resume and claimed is not None)):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / _CKPT_DIR).is_dir():
        for stale in (out / _CKPT_DIR).glob(".step-*.tmp"):  # a checkpoint cut short by a kill
            shutil.rmtree(stale, ignore_errors=True)
    write_json_atomic(started, {"run_hash": run_hash, "format_version": FORMAT_VERSION})
    return "resume" if latest_checkpoint(out) is not None else "fresh"


def _broadcast(value: str, accelerator: Accelerator) -> str:
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _save_model(model, tokenizer, directory: Path, accelerator: Accelerator) -> None:
    """Write an HF directory (safetensors + tokenizer); every process must call this (FSDP gathers)."""
    from transformers.utils import logging as hf_logging

    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # one "Writing model shards" bar per checkpoint is noise
        try:
            accelerator.unwrap_model(model).save_pretrained(directory, state_dict=state_dict, is_main_process=True)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)


def _save_checkpoint(step: int, losses: list[float], model, tokenizer, out: Path, run_hash: str,
                     cfg: TrainConfig, accelerator: Accelerator, *, resumable: bool = True) -> None:
    root = out / _CKPT_DIR
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    _save_model(model, tokenizer, tmp, accelerator)
    if resumable:
        with _quiet_tied_weights_warning():
            accelerator.save_state(str(tmp / _RESUME_DIR))
    if accelerator.is_main_process:
        if resumable:
            state = {"step": step, "losses": losses, "run_hash": run_hash, "format_version": FORMAT_VERSION}
            write_json_atomic(tmp / _RESUME_DIR / _STATE_FILE, state)
        if final.exists():
            shutil.rmtree(final)
        fsync_tree(tmp)  # a checkpoint that exists under its final name is whole, even after a power cut
        os.replace(tmp, final)
        fsync_dir(root)
        # Only the newest checkpoint needs optimizer state; older ones stay as model directories.
        older = [p for s, p in _checkpoints(out) if s < step]
        for p in older:
            shutil.rmtree(p / _RESUME_DIR, ignore_errors=True)
        if cfg.keep_checkpoints is not None:
            for p in older[: max(0, len(older) + 1 - cfg.keep_checkpoints)]:
                shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()


class _DropTiedWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


@contextlib.contextmanager
def _quiet_tied_weights_warning():
    """Accelerate warns on every save that tied embeddings are stored once; that is expected here."""
    logger = logging.getLogger("accelerate.utils.other")
    drop = _DropTiedWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _finish(out: Path, model, tokenizer, accelerator: Accelerator, record: dict[str, Any]) -> None:
    tmp = out / ".final.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    _save_model(model, tokenizer, tmp, accelerator)
    if accelerator.is_main_process:
        fsync_tree(tmp)
        for p in tmp.iterdir():
            os.replace(p, out / p.name)
        tmp.rmdir()
        fsync_dir(out)
        for _, p in _checkpoints(out):  # the run is over: optimizer state is no longer needed
            shutil.rmtree(p / _RESUME_DIR, ignore_errors=True)
        write_json_atomic(out / DONE_FILE, record)
        (out / _STARTED_FILE).unlink(missing_ok=True)
    accelerator.wait_for_everyone()


# ------------------------------------------------------------------------------- the loop


def train(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Any],
    *,
    collate: Callable[[list[Any]], dict[str, Any]],
    objective: Objective,
    cfg: TrainConfig,
    out: str | os.PathLike,
    run_hash: str,
    record: dict[str, Any] | None = None,
    accelerator: Accelerator | None = None,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` on ``examples`` with ``objective``; write an HF model directory to ``out``.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The model to train (on the CPU; moved and wrapped by Accelerate).
    tokenizer : tokenizer or None
        Saved beside every checkpoint so each is a complete model directory.
    examples : sequence
        Training examples; ``collate`` turns a list of them into a batch.
    collate : callable ``list -> dict``
        Builds a micro-batch (tensors are moved to the device by the loop).
    objective : callable ``(model, batch) -> Tensor``
        Mean loss of a micro-batch.
    cfg : TrainConfig
        Optimizer, schedule, batch, checkpoint and resume settings.
    out : path
        Output directory.
    run_hash : str
        Content hash of everything that determines the result (model, data, loss, ``cfg``).
        Checkpoints and the finished-run record carry it; a mismatch is refused.
    record : dict, default=None
        Extra fields for ``first_train.json`` (e.g. the stage's config and inputs).
    accelerator : Accelerator, default=None
        Defaults to :func:`make_accelerator`.
    description : str, default="train"
        Progress-bar label.

    Returns
    -------
    TrainResult
    """
    import torch
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    out = Path(out)
    accelerator = accelerator or make_accelerator()
    decision = _prepare_out(out, run_hash, cfg, accelerator)
    if decision == "done":
        done = finished_run(out) or {}
        return TrainResult(out=out, steps=int(done.get("steps", 0)), losses=tuple(done.get("losses", ())),
                           skipped=True, replica_fingerprints=tuple(done.get("replica_fingerprints", ())))

    set_seed(cfg.seed)
    if cfg.train_top_layers is not None:
        freeze_all_but_top_layers(model, cfg.train_top_layers)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UserError("nothing to train: every weight is frozen")
    model.train()
    optimizer = _adamw(params, cfg)
    world, rank = accelerator.num_processes, accelerator.process_index
    lengths = [example_length(e) for e in examples] if cfg.group_by_length else None
    schedule0 = batch_schedule(len(examples), batch_size=cfg.batch_size, world_size=world, rank=rank,
                               seed=cfg.seed, epoch=0, lengths=lengths)
    n_steps = total_steps(cfg, len(schedule0))
    scheduler_name = "constant_with_warmup" if cfg.schedule == "constant" else cfg.schedule
    scheduler = get_scheduler(scheduler_name, optimizer, num_warmup_steps=cfg.warmup_steps,
                              num_training_steps=n_steps)
    # The scheduler is stepped by us once per optimizer step; prepared schedulers would step once
    # per process. It is registered so save_state/load_state carry it.
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    start, losses, resumed_from = 0, [], None
    if decision == "resume":
        step, path = latest_checkpoint(out)
        state = json.loads((path / _RESUME_DIR / _STATE_FILE).read_text())
        if state.get("run_hash") != run_hash:
            raise UserError(f"{path} was written by a run with different settings; pass --overwrite to "
                            "start again or choose another --out")
        accelerator.load_state(str(path / _RESUME_DIR))
        start, losses, resumed_from = int(state["step"]), list(state["losses"]), step
        if accelerator.is_main_process:
            print(f"{description}: resuming from {path.name} (step {start} of {n_steps})", file=sys.stderr, flush=True)
        if start > n_steps:
            raise UserError(f"{path} is at step {start}, past the {n_steps} steps this run asks for")

    schedules: dict[int, list[list[int]]] = {0: schedule0}

    def micro_batch(index: int) -> dict[str, Any]:
        epoch, b = divmod(index, len(schedule0))
        if epoch not in schedules:
            schedules.clear()
            schedules[epoch] = batch_schedule(len(examples), batch_size=cfg.batch_size, world_size=world,
                                              rank=rank, seed=cfg.seed, epoch=epoch, lengths=lengths)
        indices = schedules[epoch][b]
        batch = collate([examples[i] for i in indices])
        batch["full_logits"] = cfg.full_logits
        if frozen is not None:
            batch["frozen_hidden"] = frozen.batch(indices, batch["input_ids"].shape[1])
            batch["frozen_top"] = frozen.n_top
        return _to_device(batch, accelerator.device)

    frozen = None
    if cfg.train_top_layers is not None:
        from accelerate.utils import DistributedType

        from first_train.frozen import CHECK_RTOL, build_frozen_cache

        if accelerator.distributed_type == DistributedType.FSDP:
            mode = "off"  # sharded layers cannot be run as a cut stack
        else:
            mode = cfg.frozen_cache
        frozen = build_frozen_cache(model, cfg.train_top_layers, examples, mode=mode,
                                    budget_mb=cfg.frozen_cache_mb, batch_size=max(cfg.batch_size, 16),
                                    device=accelerator.device, world_size=world, description=description,
                                    progress=cfg.progress and accelerator.is_main_process)
        if frozen is not None:
            first = micro_batch(start * cfg.grad_accum)
            error = frozen.check(model, first)
            if error > CHECK_RTOL:
                print(f"{description}: the cached frozen-layer states do not reproduce the model's forward "
                      f"(relative logit error {error:.1e}); recomputing them every step", file=sys.stderr)
                frozen = None
            elif accelerator.is_main_process and cfg.progress:
                info = frozen.describe()
                how = "read" if info["reused"] else f"computed in {info['seconds']:.1f} s"
                print(f"{description}: frozen layers cached ({info['mode']}, {info['bytes'] / 2**20:.0f} MiB, "
                      f"{how}); training the top {frozen.n_top} layers", file=sys.stderr, flush=True)

    bar = tqdm(total=n_steps, initial=start, desc=description, unit="step", dynamic_ncols=True,
               disable=not (cfg.progress and accelerator.is_main_process))
    started = time.perf_counter()
    for step in range(start, n_steps):
        running = torch.zeros((), device=accelerator.device)
        for micro in range(cfg.grad_accum):
            batch = micro_batch(step * cfg.grad_accum + micro)
            last = micro == cfg.grad_accum - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(model):
                loss = objective(model, batch)
                if not torch.isfinite(loss):
                    raise UserError(f"the loss became {float(loss)} at step {step + 1}; try a lower --lr")
                accelerator.backward(loss / cfg.grad_accum)
            running += loss.detach() / cfg.grad_accum
        if cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = float(accelerator.reduce(running, reduction="mean"))
        losses.append(step_loss)
        bar.update(1)
        window = losses[-10:]
        bar.set_postfix(loss=f"{sum(window) / len(window):.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        done_steps = step + 1
        if cfg.save_every and done_steps % cfg.save_every == 0 and done_steps < n_steps:
            _save_checkpoint(done_steps, losses, model, tokenizer, out, run_hash, cfg, accelerator)
        crash_point("train-step")
    bar.close()
    seconds = time.perf_counter() - started

    fingerprints: tuple[str, ...] = ()
    from accelerate.utils import DistributedType, gather_object

    if accelerator.distributed_type != DistributedType.FSDP:
        mine = _fingerprint(accelerator.unwrap_model(model))
        fingerprints = tuple(gather_object([mine])) if world > 1 else (mine,)
    summary = {
        "format_version": FORMAT_VERSION,
        "run_hash": run_hash,
        "steps": n_steps,
        "losses": losses,
        "resumed_from": resumed_from,
        "seconds": seconds,
        "num_processes": world,
        "replica_fingerprints": list(fingerprints),
        "frozen_cache": frozen.describe() if frozen is not None else None,
        "train": cfg.to_dict(),
        **(record or {}),
    }
    if cfg.save_every and n_steps % cfg.save_every == 0:
        # The final step is also a checkpoint step: keep a model copy there for trajectories.
        _save_checkpoint(n_steps, losses, model, tokenizer, out, run_hash, cfg, accelerator, resumable=False)
    _finish(out, model, tokenizer, accelerator, summary)
    return TrainResult(out=out, steps=n_steps, losses=tuple(losses), resumed_from=resumed_from,
                       seconds=seconds, replica_fingerprints=fingerprints)
