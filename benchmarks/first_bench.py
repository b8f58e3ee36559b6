"""FIRST benchmark (issues 4 and 11): store size, extraction, and training step times.

One run on the machine at hand (the reference is the project's 2-core CPU). Every comparison is
*interleaved*: the arms take turns step by step on the same batches, so a change in the machine's
load touches them alike; each figure is the median of ``--steps`` timed optimizer steps after one
warm-up step, and every arm uses the trainer's own optimizer (fused AdamW) unless it says so.

1. **Bytes per position** of a real top-5 store of SmolLM2 on ``countries`` prompts (every
   position), against the full fp16 row of the 49,152-token vocabulary (98,304 B).
2. **Extraction throughput** — teacher positions stored per second, for ``--positions all`` and
   ``response``.
3. **Full-model CE step** (SmolLM2-135M, the teacher's fine-tuning step): the LM head only at
   the answer position against ``--full-logits`` (the head at every position; target ≥ 1.5×),
   and against the per-tensor AdamW loop of the previous trainer. The first step's losses of the
   two head paths, from the same weights, must agree to 1e-5 relative.
4. **Student step per loss** (the 6-layer SmolLM2 student, layers 0,6,12,18,24,29): ``first``,
   ``ce`` and ``full-kd`` (the 30-layer teacher run online). Targets: ``first`` ≤ 1.15 × ``ce``
   and ≤ 0.4 × ``full-kd``.
5. **Top layers from cached activations** — SmolLM2-135M as a student with
   ``--train-top-layers 4`` and the ``first`` loss: the frozen 26 layers' output cached once
   (``first_train.frozen``) against the same student trained end to end (every weight; target
   ≥ 3× faster per step) and against the top 4 trained while recomputing the frozen 26.

Usage::

    python benchmarks/first_bench.py [--items 64] [--steps 6] [--batch-size 8] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STUDENT = "smollm2-135m:layers=0,6,12,18,24,29"
FULL_ROW_BYTES = 49_152 * 2


def extraction(teacher: str, items: int, positions: str, out: Path) -> dict:
    from first_train.config import ExtractConfig
    from first_train.extract import run_extract
    from first_train.store import TopKStore

    result = run_extract(ExtractConfig(teacher=teacher, dataset="countries", split="train", limit=items, k=5,
                                       positions=positions, batch_size=8, out=str(out), progress=False))
    size = TopKStore(out).size()
    return {"positions": positions, "n_sequences": result.n_sequences, "n_positions": result.n_positions,
            "seconds": result.seconds, "positions_per_second": result.positions_per_second,
            "payload_bytes_per_position": size.payload_bytes_per_position,
            "file_bytes_per_position": size.bytes_per_position}


def _timed(arms: dict, batches: list, steps_of: dict | None = None) -> dict[str, float]:
    """Median optimizer-step seconds per arm; arms take turns on each batch (the first is a warm-up).

    ``arms[name] = (model, optimizer, objective, extra_batch_fields)``.
    """
    measured: dict[str, list[float]] = {name: [] for name in arms}
    first_losses: dict[str, float] = {}
    for i, batch in enumerate(batches):
        for name, (model, optimizer, objective, extra) in arms.items():
            b = {**batch, **(extra(batch) if callable(extra) else extra)}
            started = time.perf_counter()
            loss = objective(model, b)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - started
            if i == 0:
                first_losses[name] = float(loss.detach())
            else:  # the first step warms up allocators and kernels
                measured[name].append(elapsed)
    if steps_of is not None:
        steps_of.update(first_losses)
    return {name: statistics.median(times) for name, times in measured.items()}


def _optimizer(model, *, fused: bool = True):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-5, fused=fused) if fused else torch.optim.AdamW(params, lr=1e-5)


def _batches(examples, collate, *, steps: int, batch_size: int, seed: int = 0) -> list:
    """``steps + 1`` seeded batches, length-bucketed as ``--group-by-length`` draws them (little padding)."""
    from first_train.trainer import batch_schedule, example_length

    lengths = [example_length(e) for e in examples]
    schedule = batch_schedule(len(examples), batch_size=batch_size, world_size=1, rank=0, seed=seed, epoch=0,
                              lengths=lengths)
    while len(schedule) < steps + 1:
        schedule += schedule
    return [collate([examples[i] for i in rows]) for rows in schedule[: steps + 1]]


def ce_full_model(teacher: str, *, items: int, steps: int, batch_size: int) -> dict:
    """The teacher's fine-tuning step: head at the answer only, --full-logits, and the old optimizer."""
    import functools

    from first_eval.zoo import load_model
    from first_train.data import collate, load_examples
    from first_train.finetune import answer_ce_objective

    arms, tokenizer = {}, None
    for name, full, fused in (("kept", False, True), ("full_logits", True, True), ("kept_loop_adamw", False, False)):
        model, tokenizer = load_model(teacher)
        model.train()
        arms[name] = (model, _optimizer(model, fused=fused), answer_ce_objective, {"full_logits": full})
    _, examples = load_examples("countries", "train", items, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = _batches(examples, functools.partial(collate, pad_id=pad, mode="response"), steps=steps,
                       batch_size=batch_size)
    first: dict[str, float] = {}
    seconds = _timed(arms, batches, first)
    return {"step_seconds": seconds, "first_step_loss": first,
            "loss_relative_difference": abs(first["kept"] - first["full_logits"]) / abs(first["full_logits"]),
            "mean_tokens_per_batch": statistics.mean(int(b["attention_mask"].sum()) for b in batches),
            "mean_padded_width": statistics.mean(int(b["input_ids"].shape[1]) for b in batches)}


def student_losses(store_dir: Path, teacher: str, *, steps: int, batch_size: int, mode: str) -> dict[str, float]:
    """Median optimizer-step seconds of the 6-layer student per loss (interleaved)."""
    import functools

    from first_eval.zoo import load_model
    from first_train.distill import DistillExample, collate_distill, load_store_examples, make_objective
    from first_train.store import TopKStore

    store = TopKStore(store_dir)
    teacher_model, _ = load_model(teacher)
    teacher_model.eval().requires_grad_(False)
    calibration = {"method": "reshape", "temperature": 0.5}
    arms = {}
    for loss in ("ce", "first", "full-kd"):
        student, tokenizer = load_model(STUDENT)
        student.train()
        arms[loss] = (student, _optimizer(student), make_objective(loss, calibration=calibration, teacher=teacher_model),
                      {})
    _, rows = load_store_examples(store, tokenizer)
    rows = [DistillExample(r.example, r.ids, r.probs) for r in rows]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = _batches(rows, functools.partial(collate_distill, pad_id=pad, mode=mode), steps=steps,
                       batch_size=batch_size)
    return _timed(arms, batches)


def top_layers(store_dir: Path, student_spec: str, *, n_top: int, steps: int, batch_size: int) -> dict:
    """A student training its top ``n_top`` layers from cached activations, against the alternatives."""
    import functools

    from first_eval.zoo import load_model
    from first_train.distill import DistillExample, collate_distill, load_store_examples, make_objective
    from first_train.frozen import build_frozen_cache
    from first_train.store import TopKStore
    from first_train.trainer import freeze_all_but_top_layers

    store = TopKStore(store_dir)
    objective = make_objective("first", calibration={"method": "reshape", "temperature": 0.5})
    arms, caches = {}, {}
    rows = collate_fn = None
    for name in ("cached", "end_to_end", "top_recomputed"):
        model, tokenizer = load_model(student_spec)
        model.train()
        if rows is None:
            _, rows = load_store_examples(store, tokenizer)
            rows = [DistillExample(r.example, r.ids, r.probs) for r in rows]
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            collate_fn = functools.partial(collate_distill, pad_id=pad, mode=store.manifest["positions"])
        extra: dict | object = {}
        if name != "end_to_end":
            trainable = freeze_all_but_top_layers(model, n_top)
        if name == "cached":
            started = time.perf_counter()
            cache = build_frozen_cache(model, n_top, rows, mode="memory", progress=False)
            caches["build_seconds"] = time.perf_counter() - started
            caches["bytes"] = cache.describe()["bytes"]
            caches["trainable_parameters"] = trainable
            extra = _cached_fields(cache)
        arms[name] = (model, _optimizer(model), objective, extra)
    batches = _batches(rows, collate_fn, steps=steps, batch_size=batch_size)
    first: dict[str, float] = {}
    seconds = _timed(arms, batches, first)
    return {"step_seconds": seconds, "first_step_loss": first, "n_top": n_top, "items": len(rows), **caches}


def _cached_fields(cache):
    """The trainer's extra batch fields; a batch's ``index`` is its rows' positions in the store order."""

    def extra(batch):
        return {"frozen_hidden": cache.batch(batch["index"].tolist(), batch["input_ids"].shape[1]),
                "frozen_top": cache.n_top}

    return extra


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="smollm2-135m", help="Teacher model spec (default: smollm2-135m).")
    parser.add_argument("--items", type=int, default=64, help="countries/train items extracted (default: 64).")
    parser.add_argument("--steps", type=int, default=6, help="Timed optimizer steps per loss (default: 6).")
    parser.add_argument("--batch-size", type=int, default=8, help="Sequences per student step (default: 8).")
    parser.add_argument("--top-layers", type=int, default=4, help="Trained top layers of item 5 (default: 4).")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice).")
    parser.add_argument("--json", type=Path, help="Also write the results here as JSON.")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    results: dict = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                 "load_average_1min_before": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory(prefix="first-bench-") as tmp:
        tmp = Path(tmp)
        results["extract_all"] = extraction(args.teacher, args.items, "all", tmp / "store-all")
        results["extract_response"] = extraction(args.teacher, args.items, "response", tmp / "store-response")
        results["ce_full_model"] = ce_full_model(args.teacher, items=args.items, steps=args.steps,
                                                 batch_size=args.batch_size)
        results["step_seconds"] = student_losses(tmp / "store-response", args.teacher, steps=args.steps,
                                                 batch_size=args.batch_size, mode="response")
        results["step_seconds_all"] = student_losses(tmp / "store-all", args.teacher, steps=args.steps,
                                                     batch_size=args.batch_size, mode="all")
        results["top_layers"] = top_layers(tmp / "store-response", args.teacher, n_top=args.top_layers,
                                           steps=args.steps, batch_size=args.batch_size)
    results["machine"]["load_average_1min_after"] = os.getloadavg()[0]
    s = results["step_seconds"]
    ex = results["extract_all"]
    ce = results["ce_full_model"]
    cs = ce["step_seconds"]
    top = results["top_layers"]
    ts = top["step_seconds"]
    rows = [
        ("bytes / position, top-5 store (ids + probs)", f"{ex['payload_bytes_per_position']:.1f} B",
         f"vs {FULL_ROW_BYTES:,} B full fp16 row ({FULL_ROW_BYTES / ex['payload_bytes_per_position']:,.0f}× smaller)"),
        ("bytes / position, whole shard files", f"{ex['file_bytes_per_position']:.1f} B",
         f"{ex['n_positions']} positions of {ex['n_sequences']} sequences (index + headers amortized)"),
        ("extraction, every position", f"{ex['positions_per_second']:.0f} pos/s",
         f"{ex['n_positions']} positions in {ex['seconds']:.1f} s"),
        ("extraction, answer position only", f"{results['extract_response']['positions_per_second']:.1f} pos/s",
         f"{results['extract_response']['n_positions']} positions (one per sequence) in "
         f"{results['extract_response']['seconds']:.1f} s"),
        ("full-model CE step, head at the answer only", f"{cs['kept']:.2f} s",
         f"SmolLM2-135M, batch {args.batch_size}, {ce['mean_padded_width']:.0f} tokens wide"),
        ("full-model CE step, --full-logits", f"{cs['full_logits']:.2f} s",
         f"{cs['full_logits'] / cs['kept']:.2f}× the head-at-the-answer step (target ≥ 1.5); first-step losses "
         f"differ by {ce['loss_relative_difference']:.1e} relative (target ≤ 1e-5)"),
        ("full-model CE step, per-tensor AdamW loop", f"{cs['kept_loop_adamw']:.2f} s",
         f"{cs['kept_loop_adamw'] / cs['kept']:.2f}× the fused-AdamW step (the previous trainer's optimizer)"),
        ("student step, ce", f"{s['ce']:.2f} s", f"6-layer student, batch {args.batch_size}"),
        ("student step, first", f"{s['first']:.2f} s",
         f"{s['first'] / s['ce']:.2f}× ce (target ≤ 1.15), {s['first'] / s['full-kd']:.2f}× full-kd (target ≤ 0.4)"),
        ("student step, full-kd", f"{s['full-kd']:.2f} s", "teacher (30 layers) run online"),
    ]
    a = results["step_seconds_all"]
    rows += [
        ("every position: student step, ce", f"{a['ce']:.2f} s", "next-token CE on every prompt token"),
        ("every position: student step, first", f"{a['first']:.2f} s",
         f"{a['first'] / a['ce']:.2f}× ce, {a['first'] / a['full-kd']:.2f}× full-kd"),
        ("every position: student step, full-kd", f"{a['full-kd']:.2f} s", "dense KL over 49,152 tokens a position"),
        (f"top {top['n_top']} layers from cached activations, first", f"{ts['cached']:.3f} s",
         f"SmolLM2-135M student, {top['trainable_parameters']:,} trainable weights; cache of {top['items']} items "
         f"({top['bytes'] / 2**20:.1f} MiB) built once in {top['build_seconds']:.1f} s"),
        ("same student end to end (every weight)", f"{ts['end_to_end']:.3f} s",
         f"{ts['end_to_end'] / ts['cached']:.2f}× the cached step (target ≥ 3)"),
        (f"top {top['n_top']} layers, frozen layers recomputed", f"{ts['top_recomputed']:.3f} s",
         f"{ts['top_recomputed'] / ts['cached']:.2f}× the cached step"),
    ]
    results["ratios"] = {"first_over_ce": s["first"] / s["ce"], "first_over_full_kd": s["first"] / s["full-kd"],
                         "all_first_over_ce": a["first"] / a["ce"], "all_first_over_full_kd": a["first"] / a["full-kd"],
                         "full_logits_over_kept": cs["full_logits"] / cs["kept"],
                         "loop_adamw_over_fused": cs["kept_loop_adamw"] / cs["kept"],
                         "end_to_end_over_cached": ts["end_to_end"] / ts["cached"],
                         "recomputed_over_cached": ts["top_recomputed"] / ts["cached"]}
    width = max(len(r[0]) for r in rows)
    print(f"FIRST benchmark — {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load average {results['machine']['load_average_1min_before']:.1f} → "
          f"{results['machine']['load_average_1min_after']:.1f}")
    print(f"| {'measure':<{width}} | value | note |\n|{'-' * (width + 2)}|-------|------|")
    for name, value, note in rows:
        print(f"| {name:<{width}} | {value} | {note} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
