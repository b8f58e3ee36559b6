"""The shared training loop: data schedule, loss falls, checkpoints load, exact resume, freezing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from first_eval.errors import UserError
from first_train.config import FinetuneConfig, TrainConfig
from first_train.trainer import batch_schedule, finished_run, latest_checkpoint

FAST = dict(progress=False, lr=1e-2, batch_size=4)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(directory) / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# ------------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("n,batch,world", [(10, 3, 1), (10, 2, 2), (5, 4, 2), (1, 2, 3)])
def test_batch_schedule_covers_every_item_and_splits_ranks(n, batch, world):
    per_rank = [batch_schedule(n, batch_size=batch, world_size=world, rank=r, seed=3, epoch=1)
                for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1  # every rank takes the same number of steps
    seen = [i for p in per_rank for b in p for i in b]
    assert all(len(b) == batch for p in per_rank for b in p)
    assert set(seen) == set(range(n))  # padding repeats items; none is missing
    assert batch_schedule(n, batch_size=batch, world_size=world, rank=0, seed=3, epoch=1) == per_rank[0]
    other = batch_schedule(n, batch_size=batch, world_size=world, rank=0, seed=3, epoch=2)
    assert n < 3 or other != per_rank[0]  # a new order each epoch


def test_train_config_range_checks_are_one_line_user_errors():
    with pytest.raises(UserError, match="--batch-size must be ≥ 1, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(UserError, match="--schedule must be one of"):
        TrainConfig(schedule="exotic")
    with pytest.raises(UserError, match="--train-top-layers"):
        TrainConfig(train_top_layers=0)


# ------------------------------------------------------------------------------- data


@pytest.mark.parametrize("template", ["plain", "chat"])
def test_training_sequences_are_what_the_scorer_reads(template, tiny_llama):
    """The trained position and answer token are exactly the scorer's next-token read of the letters."""
    from first_eval.data import load_dataset
    from first_eval.scorer import Scorer
    from first_train.data import collate, encode_items, kept_logits

    model, tokenizer = tiny_llama
    items = load_dataset("countries", split="val", limit=6)
    examples = encode_items(items, tokenizer, template=template)
    scorer = Scorer(model, tokenizer, template=template, progress=False)
    for item, example in zip(items, examples):
        assert list(example.input_ids[:-1]) == scorer._encode([scorer.prompt(item)])[0]
        assert list(example.option_ids) == scorer.letter_ids(len(item.choices))
        assert example.input_ids[-1] == example.option_ids[item.label]
    with torch.no_grad():
        logits = kept_logits(model, collate(examples, pad_id=0))[0]  # right-padded batch
    for row, (example, score) in enumerate(zip(examples, scorer.score(items))):
        mine = torch.softmax(logits[row, list(example.option_ids)].double(), -1)
        torch.testing.assert_close(mine, torch.tensor(score.probs, dtype=torch.double), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------- finetune


def test_finetune_loss_falls_and_every_checkpoint_loads(tmp_path, tiny_model_dir):
    from first_eval.scorer import Scorer
    from first_eval.data import load_dataset
    from first_eval.zoo import load_model
    from first_eval.digest import model_digest
    from first_train.finetune import run_finetune

    out = tmp_path / "ft"
    cfg = FinetuneConfig(model=str(tiny_model_dir), dataset="countries", limit=16, out=str(out),
                         max_steps=12, save_every=4, **FAST)
    result = run_finetune(cfg)
    assert result.steps == 12 and len(result.losses) == 12
    assert sum(result.losses[-3:]) / 3 < result.losses[0] - 1.0  # answer-letter CE falls fast
    steps = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").iterdir())
    assert steps == [4, 8, 12]
    items = load_dataset("countries", split="test", limit=4)
    for directory in [out / "checkpoints" / f"step-{s:06d}" for s in steps] + [out]:
        model, tokenizer = load_model(str(directory))  # each is a model dir the zoo and scorer read
        scores = Scorer(model, tokenizer, progress=False).score(items)
        assert all(abs(sum(s.probs) - 1) < 1e-6 for s in scores)
    assert not (out / "checkpoints" / "step-000008" / "resume").exists()  # optimizer state pruned
    assert_same_weights(out, out / "checkpoints" / "step-000012")
    # Each checkpoint has its own identity in the study cache (a regression: every checkpoint,
    # being under checkpoints/, once hashed as an empty directory and shared one cache slot) —
    # by content, so the final checkpoint and the final model, the same weights, share one.
    idents = [model_digest(str(out / "checkpoints" / f"step-{s:06d}")) for s in steps]
    assert len(set(idents)) == 3 and model_digest(str(out)) == idents[-1]
    record = finished_run(out)
    assert record["stage"] == "finetune" and record["losses"] == list(result.losses)

    again = run_finetune(cfg)  # same settings: nothing to do
    assert again.skipped and again.losses == result.losses
    with pytest.raises(UserError, match="different settings"):
        run_finetune(FinetuneConfig(**{**cfg.to_dict(), "lr": 1e-3}))


def test_resume_after_a_crash_gives_identical_weights(tmp_path, tiny_model_dir, monkeypatch):
    import first_train.finetune as finetune

    common = dict(model=str(tiny_model_dir), dataset="countries", limit=16, max_steps=6, save_every=2,
                  grad_accum=2, **FAST)
    reference = finetune.run_finetune(FinetuneConfig(out=str(tmp_path / "a"), **common))

    real, calls = finetune.answer_ce_objective, {"n": 0}

    def crash_in_step_5(model, batch):
        calls["n"] += 1
        if calls["n"] == 9:  # the first micro-batch of step 5 (2 per step)
            raise KeyboardInterrupt
        return real(model, batch)

    monkeypatch.setattr(finetune, "answer_ce_objective", crash_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        finetune.run_finetune(FinetuneConfig(out=str(tmp_path / "b"), **common))
    assert latest_checkpoint(tmp_path / "b")[0] == 4 and finished_run(tmp_path / "b") is None
    monkeypatch.setattr(finetune, "answer_ce_objective", real)
    resumed = finetune.run_finetune(FinetuneConfig(out=str(tmp_path / "b"), **common))
    assert resumed.resumed_from == 4
    assert resumed.losses == reference.losses
    assert_same_weights(tmp_path / "a", tmp_path / "b")


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path, tiny_model_dir):
    from first_train.finetune import run_finetune

    common = dict(model=str(tiny_model_dir), dataset="countries", limit=16, max_steps=3, progress=False,
                  lr=1e-2)
    run_finetune(FinetuneConfig(out=str(tmp_path / "big"), batch_size=8, **common))
    run_finetune(FinetuneConfig(out=str(tmp_path / "acc"), batch_size=4, grad_accum=2, **common))
    big, acc = weights(tmp_path / "big"), weights(tmp_path / "acc")
    for key in big:
        torch.testing.assert_close(big[key], acc[key], atol=2e-5, rtol=1e-4)


def test_train_top_layers_leaves_the_rest_untouched(tmp_path, tiny_model_dir):
    from first_train.finetune import run_finetune

    run_finetune(FinetuneConfig(model=str(tiny_model_dir), dataset="countries", limit=8, out=str(tmp_path / "top"),
                                max_steps=2, train_top_layers=1, **FAST))
    before, after = weights(tiny_model_dir), weights(tmp_path / "top")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("model.layers.1.", "model.norm.")) for k in changed)
    with pytest.raises(UserError, match="only 2 layers"):
        run_finetune(FinetuneConfig(model=str(tiny_model_dir), dataset="countries", limit=8,
                                    out=str(tmp_path / "bad"), max_steps=1, train_top_layers=3, **FAST))


@pytest.mark.slow
def test_kill_and_resume_in_a_subprocess_gives_identical_weights(tmp_path, tiny_model_dir):
    """SIGKILL a real `first-train finetune` after a checkpoint; resuming ends bit-identical.

    Every part runs on one thread, as the subprocess does: CPU kernels may pick another
    blocking for another thread count, which changes the last bits (not what this test is about).
    """
    from first_train.finetune import run_finetune

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _kill_and_resume(tmp_path, tiny_model_dir, run_finetune)
    finally:
        torch.set_num_threads(threads)


def _kill_and_resume(tmp_path, tiny_model_dir, run_finetune):

    args = dict(model=str(tiny_model_dir), dataset="countries", limit=16, max_steps=40, save_every=5,
                **FAST)
    run_finetune(FinetuneConfig(out=str(tmp_path / "ref"), **args))

    out = tmp_path / "killed"
    cmd = [sys.executable, "-c", "from first_train.cli import main; main()", "finetune",
           "--model", str(tiny_model_dir), "--dataset", "countries", "--limit", "16", "--out", str(out),
           "--max-steps", "40", "--save-every", "5", "--lr", "1e-2", "--batch-size", "4", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 300
        while latest_checkpoint(out) is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = latest_checkpoint(out)[0]
    assert finished_run(out) is None and killed_at < 40
    resumed = run_finetune(FinetuneConfig(out=str(out), **args))
    assert resumed.resumed_from is not None and resumed.resumed_from >= killed_at
    assert_same_weights(tmp_path / "ref", out)
    assert json.loads((out / "first_train.json").read_text())["losses"] == \
        json.loads((tmp_path / "ref" / "first_train.json").read_text())["losses"]
