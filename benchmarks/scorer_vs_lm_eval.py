"""FIRST's :class:`~first_eval.scorer.Scorer` against lm-evaluation-harness 0.4.13, in one run.

Both score the same MMLU questions (a seeded, subject-stratified subset of the ``mmlu`` built-in)
with the same prompt, on the same fp32 SmolLM2-135M-Instruct weights (the safetensors directory
``first_eval.zoo`` converts from the GGUF once), zero-shot and k-shot:

* **lm-eval**: its HF backend (``HFLM``, batch 8, logits cache on) with a custom task —
  ``doc_to_text`` = our plain question block, ``doc_to_choice: ["A", "B", "C", "D"]``, default
  delimiters (``" "`` before the answer, ``"\\n\\n"`` between examples), and for k-shot a
  ``fewshot_split`` holding exactly the k examples with ``fewshot_config: {sampler: first_n}``,
  so the same k examples precede every question.
* **FIRST**: ``Scorer(model, tokenizer, fewshot=<the same k examples>)``, default token budget.

Reported per setting: questions/second (lm-eval timed inside its ``loglikelihood`` loop,
tokenization included; FIRST timed around ``Scorer.score``, prompt building and tokenization
included), useful FLOPs and achieved FLOP/s against an fp32 matmul peak measured in the same run
(``torch.matmul`` of 4096×4096 matrices, best of several, before and after), how many predicted
letters differ, and the largest difference in a letter's log-probability.

FLOPs (multiply-add = 2 FLOPs, real tokens only, padding not counted):
  a token through the body costs 2·P_body (P_body: every Linear weight in the decoder layers) plus
  attention 4·n_heads·head_dim·n_layers·context; the LM head costs 2·V·H per position it runs at.
  lm-eval runs body and head at every prompt position; FIRST runs the body over the prompt (for
  k-shot: the shared few-shot prefix once, then each question's own tokens attending to it) and
  the head at the last position only.

Install lm-eval into the project venv (a benchmark-only dependency, not in pyproject.toml), then
check torch stayed at 2.13.0 (if pip wants to change it, add ``torch==2.13.0`` to the same
command line)::

    .venv/bin/pip install lm-eval==0.4.13
    .venv/bin/pip list | grep -E '^torch '       # torch 2.13.0+cpu

Run (no hub access needed)::

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python benchmarks/scorer_vs_lm_eval.py \\
        --n 300 --shots 0 5 --out reports/scorer_vs_lm_eval.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from first_eval.data import load_dataset  # noqa: E402
from first_eval.prompts import LETTERS, question_block  # noqa: E402
from first_eval.scorer import Scorer, default_batch_tokens  # noqa: E402
from first_eval.zoo import load_model  # noqa: E402


# ----------------------------------------------------------------------------- the machine
def matmul_peak(size: int = 4096, repeats: int = 4) -> float:
    """Best fp32 FLOP/s of ``torch.matmul`` on two random size×size matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


# ----------------------------------------------------------------------------- FLOP model
class FlopModel:
    """Useful FLOPs of a decoder-only LM, per the module docstring."""

    def __init__(self, model) -> None:
        cfg = model.config
        self.body = sum(m.weight.numel() for m in model.model.layers.modules()
                        if isinstance(m, torch.nn.Linear))
        self.head = model.get_output_embeddings().weight.numel()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.attn = 4 * cfg.num_attention_heads * head_dim * cfg.num_hidden_layers

    def tokens(self, n: int, past: int = 0) -> float:
        """Body FLOPs of ``n`` tokens that follow ``past`` cached tokens (causal attention)."""
        contexts = n * past + n * (n + 1) / 2
        return 2.0 * self.body * n + self.attn * contexts

    def full_prompt_all_heads(self, n: int) -> float:
        return self.tokens(n) + 2.0 * self.head * n

    def last_head(self, n: int, past: int = 0) -> float:
        return self.tokens(n, past) + 2.0 * self.head


# ----------------------------------------------------------------------------- lm-eval
def write_task_files(items, dev, root: Path) -> dict:
    """JSONL test/dev files and the lm-eval task config that reads them.

    ``dev`` holds the worked examples in order; ``sampler: first_n`` takes the first k.
    """
    def doc(it):
        return {"id": it.id, "question": it.question, "choices": list(it.choices), "answer": it.label}

    test = root / "test.jsonl"
    test.write_text("".join(json.dumps(doc(it)) + "\n" for it in items))
    dev_file = root / "dev.jsonl"
    dev_file.write_text("".join(json.dumps(doc(it)) + "\n" for it in dev))
    return {
        "task": "first_mmlu_bench",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(test), "dev": str(dev_file)}},
        "test_split": "test",
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        # Our plain block, exactly: "Question: …\nA. …\nD. …\nAnswer:".
        "doc_to_text": lambda d: question_block(_Doc(d)),
        "doc_to_choice": list(LETTERS[:4]),
        "doc_to_target": "answer",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }


class _Doc:
    def __init__(self, d: dict) -> None:
        self.id, self.question, self.choices, self.label = d["id"], d["question"], d["choices"], d["answer"]


def run_lm_eval(lm, task_manager, task: dict, shots: int) -> dict:
    """Run lm-eval once; time its loglikelihood loop; return per-doc letter log-likelihoods."""
    from lm_eval import simple_evaluate

    timer = {"seconds": 0.0}
    inner = lm.loglikelihood

    def timed(requests, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(requests, *args, **kwargs)
        finally:
            timer["seconds"] += time.perf_counter() - t0

    lm.loglikelihood = timed
    try:
        t0 = time.perf_counter()
        out = simple_evaluate(model=lm, tasks=[dict(task, num_fewshot=shots)], num_fewshot=shots,
                              log_samples=True, bootstrap_iters=0, task_manager=task_manager,
                              verbosity="ERROR")
        wall = time.perf_counter() - t0
    finally:
        lm.loglikelihood = inner
    samples = out["samples"]["first_mmlu_bench"]
    by_id = {}
    for s in samples:
        lls = [float(r[0]) for r in s["filtered_resps"]]
        contexts = {a[0] for a in s["arguments"]} if isinstance(s["arguments"][0], (list, tuple)) else \
            {a["gen_args_0"]["arg_0"] for a in s["arguments"].values()}
        by_id[s["doc"]["id"]] = {"lls": lls, "contexts": contexts}
    return {"loop_seconds": timer["seconds"], "wall_seconds": wall, "docs": by_id,
            "acc": out["results"]["first_mmlu_bench"].get("acc,none")}


# ----------------------------------------------------------------------------- one setting
def compare(model, tok, lm, task_manager, items, dev, k: int, flops: FlopModel,
            batch_tokens: int | None) -> dict:
    shots = dev[:k]
    with tempfile.TemporaryDirectory() as tmp:
        task = write_task_files(items, dev, Path(tmp))
        lme = run_lm_eval(lm, task_manager, task, k)

        scorer = Scorer(model, tok, fewshot=shots, batch_tokens=batch_tokens, progress=False)
        t0 = time.perf_counter()
        ours = scorer.score(items)
        ours_seconds = time.perf_counter() - t0

    # Same prompts?
    same_prompt = sum(lme["docs"][s.id]["contexts"] == {s.prompt} for s in ours)
    # Same letters? lm-eval: argmax of the letter log-likelihoods; FIRST: argmax of probs.
    lme_pred = np.array([int(np.argmax(lme["docs"][s.id]["lls"])) for s in ours])
    our_pred = np.array([s.prediction for s in ours])
    our_lls = np.array([np.log(s.probs) + np.log(s.option_mass) for s in ours])  # log p(letter) over the vocab
    lme_lls = np.array([lme["docs"][s.id]["lls"] for s in ours])

    # FLOPs over real tokens.
    seqs = scorer._encode([s.prompt for s in ours])
    lengths = [len(x) for x in seqs]
    shared = scorer._shared_prefix(seqs) if k else 0
    lme_flops = sum(flops.full_prompt_all_heads(n) for n in lengths)
    our_flops = flops.tokens(shared) + sum(flops.last_head(n - shared, shared) for n in lengths)
    n = len(items)
    return {
        "shots": k, "n": n, "prompt_tokens_mean": float(np.mean(lengths)), "shared_prefix_tokens": shared,
        "prompts_identical": int(same_prompt),
        "letters_differ": int((lme_pred != our_pred).sum()),
        "max_abs_letter_logprob_diff": float(np.abs(our_lls - lme_lls).max()),
        "accuracy_first": float((our_pred == [s.label for s in ours]).mean()),
        "accuracy_lm_eval": lme["acc"],
        "lm_eval": {"seconds": lme["loop_seconds"], "wall_seconds": lme["wall_seconds"],
                    "qps": n / lme["loop_seconds"], "flops": lme_flops,
                    "flop_per_s": lme_flops / lme["loop_seconds"]},
        "first": {"seconds": ours_seconds, "qps": n / ours_seconds, "flops": our_flops,
                  "flop_per_s": our_flops / ours_seconds},
        "speedup": lme["loop_seconds"] / ours_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="MMLU questions (stratified by subject).")
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 5], help="Settings to run.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the question subset.")
    parser.add_argument("--batch-size", type=int, default=8, help="lm-eval's batch size.")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="FIRST's token budget (default: the Scorer's, 1024 on CPU).")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads.")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here too.")
    args = parser.parse_args(argv)

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    peak_before = matmul_peak()
    model, tok = load_model("smollm2-135m")  # fp32, the converted safetensors directory
    items = load_dataset("mmlu", limit=args.n, seed=args.seed)
    chosen = {it.id for it in items}
    pool = [it for it in load_dataset("mmlu") if it.id not in chosen]
    shots_pool = pool[: max(max(args.shots), 1)]  # first_n: the first k of a split the questions are not in
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size, device="cpu")
    task_manager = TaskManager()
    flops = FlopModel(model)

    # Warm both paths up (allocator, kernels) on a few other questions; not timed.
    warm = pool[-8:]
    Scorer(model, tok, progress=False).score(warm)
    with tempfile.TemporaryDirectory() as tmp:
        run_lm_eval(lm, task_manager, write_task_files(warm, shots_pool, Path(tmp)), 0)

    results = [compare(model, tok, lm, task_manager, items, shots_pool, k, flops, args.batch_tokens)
               for k in args.shots]
    peak = max(peak_before, matmul_peak())
    report = {"lm_eval_version": lm_eval.__version__, "torch": torch.__version__, "threads": args.threads,
              "lm_eval_batch_size": args.batch_size,
              "first_batch_tokens": args.batch_tokens or default_batch_tokens(model.device),
              "matmul_peak_flop_per_s": peak, "model": "smollm2-135m (fp32)", "results": results}

    print(f"matmul peak (fp32, 4096², {args.threads} threads): {peak / 1e9:.1f} GFLOP/s; "
          f"lm-eval {lm_eval.__version__} (batch {args.batch_size}), torch {torch.__version__}; "
          f"FIRST batch budget {report['first_batch_tokens']} tokens; {len(items)} MMLU questions")
    print(f"{'setting':<8} {'who':<8} {'q/s':>7} {'seconds':>8} {'GFLOP/q':>8} {'GFLOP/s':>8} {'% peak':>7}")
    for r in results:
        for who in ("lm_eval", "first"):
            f = r[who]
            print(f"{r['shots']}-shot   {who:<8} {f['qps']:7.2f} {f['seconds']:8.1f} "
                  f"{f['flops'] / r['n'] / 1e9:8.2f} {f['flop_per_s'] / 1e9:8.1f} "
                  f"{100 * f['flop_per_s'] / peak:6.1f}%")
        print(f"{r['shots']}-shot   speed-up {r['speedup']:.2f}x; letters differ {r['letters_differ']}/{r['n']}; "
              f"prompts identical {r['prompts_identical']}/{r['n']}; max |Δ log p(letter)| "
              f"{r['max_abs_letter_logprob_diff']:.1e}; accuracy {r['accuracy_first']:.3f} (FIRST) "
              f"{r['accuracy_lm_eval']:.3f} (lm-eval); prompt {r['prompt_tokens_mean']:.0f} tokens, "
              f"shared prefix {r['shared_prefix_tokens']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
