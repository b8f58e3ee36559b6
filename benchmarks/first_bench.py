"""FIRST benchmark (issue 4): store size, student step time per loss, extraction throughput.

One run on the machine at hand (the reference is the project's 2-core CPU):

1. **Bytes per position** of a real top-5 store of SmolLM2 on ``countries`` prompts (every
   position), against the full fp16 row of the 49,152-token vocabulary (98,304 B).
2. **Extraction throughput** — teacher positions stored per second, for ``--positions all`` (every
   token of the prompt) and ``response`` (the answer position only).
3. **Student step time** of the 6-layer SmolLM2 student (layers 0,6,12,18,24,29) with ``first``,
   ``ce`` and ``full-kd`` (the 30-layer teacher run online), on the same batches: median of
   ``--steps`` timed optimizer steps after one warm-up step. Targets: ``first`` ≤ 1.15 × ``ce`` and
   ≤ 0.4 × ``full-kd``.

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


def step_times(store_dir: Path, teacher: str, *, steps: int, batch_size: int, mode: str) -> dict[str, float]:
    """Median optimizer-step seconds per loss; the losses take turns step by step, so a change in
    the machine's load during the run touches all three alike."""
    import torch

    from first_eval.zoo import load_model
    from first_train.distill import DistillExample, collate_distill, load_store_examples, make_objective
    from first_train.store import TopKStore

    store = TopKStore(store_dir)
    teacher_model, _ = load_model(teacher)
    teacher_model.eval().requires_grad_(False)
    calibration = {"method": "reshape", "temperature": 0.5}
    runs = {}
    for loss in ("ce", "first", "full-kd"):
        student, tokenizer = load_model(STUDENT)
        student.train()
        runs[loss] = (student, torch.optim.AdamW(student.parameters(), lr=1e-5),
                      make_objective(loss, calibration=calibration, teacher=teacher_model))
    _, rows = load_store_examples(store, tokenizer)
    rows = [DistillExample(r.example, r.ids, r.probs) for r in rows]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = [collate_distill(rows[i * batch_size:(i + 1) * batch_size], pad_id=pad, mode=mode)
               for i in range(steps + 1)]
    measured: dict[str, list[float]] = {loss: [] for loss in runs}
    for i, batch in enumerate(batches):
        for loss, (student, optimizer, objective) in runs.items():
            started = time.perf_counter()
            objective(student, batch).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i:  # the first step warms up allocators and kernels
                measured[loss].append(time.perf_counter() - started)
    return {loss: statistics.median(times) for loss, times in measured.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="smollm2-135m", help="Teacher model spec (default: smollm2-135m).")
    parser.add_argument("--items", type=int, default=64, help="countries/train items extracted (default: 64).")
    parser.add_argument("--steps", type=int, default=6, help="Timed optimizer steps per loss (default: 6).")
    parser.add_argument("--batch-size", type=int, default=8, help="Sequences per student step (default: 8).")
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
        results["step_seconds"] = step_times(tmp / "store-response", args.teacher, steps=args.steps,
                                             batch_size=args.batch_size, mode="response")
        results["step_seconds_all"] = step_times(tmp / "store-all", args.teacher, steps=args.steps,
                                                 batch_size=args.batch_size, mode="all")
    results["machine"]["load_average_1min_after"] = os.getloadavg()[0]
    s = results["step_seconds"]
    ex = results["extract_all"]
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
    ]
    results["ratios"] = {"first_over_ce": s["first"] / s["ce"], "first_over_full_kd": s["first"] / s["full-kd"],
                         "all_first_over_ce": a["first"] / a["ce"], "all_first_over_full_kd": a["first"] / a["full-kd"]}
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
