"""The training fast paths against the straightforward ones (issue 11).

* the LM head only at the supervised positions, against ``--full-logits``: same loss and same
  gradients to float32 round-off, for fine-tuning and every distillation loss;
* length-bucketed batches: every item once per epoch, deterministic, less padding;
* cached frozen bottom layers (``--train-top-layers``): the same loss and gradients as running
  the whole network, the same training run, memory and disk alike, reused across runs;
* the fused AdamW kernel against the per-tensor loop.
"""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch
from safetensors.torch import load_file

from first_train.config import FinetuneConfig
from first_train.data import collate, encode_items
from first_train.trainer import batch_schedule, finished_run

LOSSES = ("ce", "first", "topk", "topk-rest", "rs-kd", "full-kd")
FAST = dict(progress=False, lr=1e-2, batch_size=4)


def _items(n: int = 12):
    from first_eval.data import load_dataset

    return load_dataset("countries", split="train", limit=n)


def _distill_batch(model, tokenizer, mode: str, *, seed: int = 0) -> dict:
    """A real batch of countries prompts with random (valid) teacher rows at its kept positions."""
    examples = encode_items(_items(6), tokenizer)
    batch = collate(examples, pad_id=tokenizer.eos_token_id, mode=mode)
    n, v = int(batch["keep"].sum()), model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(v, generator=g)[:5] for _ in range(n)])
    probs = torch.rand(n, 5, generator=g)
    probs = probs / probs.sum(-1, keepdim=True) * 0.9
    batch.update(teacher_ids=ids.unsqueeze(0), teacher_probs=probs.unsqueeze(0),
                 rs_ids=ids[:, :4].unsqueeze(0), rs_weights=torch.full((1, n, 4), 0.25))
    return batch


def _loss_and_grads(objective, model, batch, **flags):
    model.zero_grad(set_to_none=True)
    loss = objective(model, {**batch, **flags})
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(a, b, *, rtol: float) -> None:
    (la, ga), (lb, gb) = a, b
    torch.testing.assert_close(la, lb, rtol=rtol, atol=0)
    assert ga.keys() == gb.keys() and ga
    for name in ga:  # relative to the tensor's own scale: round-off, not a different gradient
        # A different gradient (a wrong position, a missing term) is off by O(1). fp32 round-off
        # through 30 layers of backward is CPU- and shape-dependent (MKL blocks a matmul over all
        # positions differently from one over the kept ones): on an AMD EPYC, SmolLM2's losses
        # agreed to 1e-7 while a LayerNorm weight's gradient differed by up to 2e-4 relative (both
        # in norm and in its largest element), and run to run. So both within 100·rtol.
        diff = ga[name] - gb[name]
        norm = gb[name].norm().clamp_min(1e-30)
        scale = gb[name].abs().max().clamp_min(1e-30)
        assert float(diff.norm() / norm) < rtol * 100, name
        assert float(diff.abs().max() / scale) < rtol * 100, name


def _objective(loss: str, teacher=None):
    from first_train.distill import make_objective

    return make_objective(loss, calibration={"method": "reshape", "temperature": 0.5}, teacher=teacher)


# ------------------------------------------------------------------------------- LM head only where read


@pytest.mark.parametrize("mode", ["response", "all"])
@pytest.mark.parametrize("loss", LOSSES)
def test_head_at_kept_positions_equals_full_logits(loss, mode, tiny_llama):
    model, tokenizer = tiny_llama
    model = copy.deepcopy(model).train()
    teacher = None
    if loss == "full-kd":
        from tiny_models import make_tiny_llama

        teacher = make_tiny_llama(tokenizer, seed=1).requires_grad_(False)
    objective = _objective(loss, teacher)
    batch = _distill_batch(model, tokenizer, mode)
    kept = _loss_and_grads(objective, model, batch)
    full = _loss_and_grads(objective, model, batch, full_logits=True)
    assert float(kept[0]) > 0
    _assert_same(kept, full, rtol=1e-5)


def test_full_logits_really_computes_every_position(tiny_llama, monkeypatch):
    """The reference path is not the fast path in disguise: the head sees every position."""
    model, tokenizer = tiny_llama
    batch = _distill_batch(model, tokenizer, "response")
    from first_train.data import kept_logits

    seen = []
    handle = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        with torch.no_grad():
            kept = kept_logits(model, batch)
            full = kept_logits(model, batch, full_logits=True)
    finally:
        handle.remove()
    rows = int(batch["keep"].sum())
    assert seen[0][-2] == rows and seen[1][:2] == batch["input_ids"].shape
    torch.testing.assert_close(kept, full, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "first"])
def test_head_at_kept_positions_equals_full_logits_on_smollm2(loss):
    from first_eval.zoo import load_model

    model, tokenizer = load_model("smollm2-135m")
    model.train()
    batch = _distill_batch(model, tokenizer, "response")
    objective = _objective(loss)
    kept = _loss_and_grads(objective, model, batch)
    full = _loss_and_grads(objective, model, batch, full_logits=True)
    _assert_same(kept, full, rtol=1e-5)


def test_extraction_with_full_logits_stores_the_same_rows(tmp_path, tiny_model_dir):
    from first_train.config import ExtractConfig
    from first_train.extract import run_extract
    from first_train.store import TopKStore

    common = dict(teacher=str(tiny_model_dir), dataset="countries", split="train", limit=8, k=5,
                  positions="all", progress=False)
    run_extract(ExtractConfig(out=str(tmp_path / "kept"), **common))
    run_extract(ExtractConfig(out=str(tmp_path / "full"), full_logits=True, **common))
    kept, full = list(TopKStore(tmp_path / "kept")), list(TopKStore(tmp_path / "full"))
    assert [r.seq_id for r in kept] == [r.seq_id for r in full] and len(kept) == 8
    for a, b in zip(kept, full):
        # near-uniform random-model rows can swap equal-probability ids; compare id → prob
        for row in range(a.ids.shape[0]):
            pa = dict(zip(a.ids[row].tolist(), a.probs[row].tolist()))
            pb = dict(zip(b.ids[row].tolist(), b.probs[row].tolist()))
            shared = pa.keys() & pb.keys()
            assert len(shared) >= 4
            for token in shared:
                assert abs(pa[token] - pb[token]) <= 1e-3 * max(pb[token], 1e-6) + 1e-7


# ------------------------------------------------------------------------------- length buckets


def test_length_buckets_cover_every_item_and_pad_less():
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(10, 200, (203,), generator=g).tolist()

    def padding(schedule):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in schedule)

    for world in (1, 2):
        per_rank = [batch_schedule(203, batch_size=4, world_size=world, rank=r, seed=5, epoch=2, lengths=lengths)
                    for r in range(world)]
        plain = [batch_schedule(203, batch_size=4, world_size=world, rank=r, seed=5, epoch=2) for r in range(world)]
        assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == len(plain[0])
        seen = sorted(i for p in per_rank for b in p for i in b)
        assert seen == sorted(i for p in plain for b in p for i in b)  # the same items, the same cyclic padding
        assert set(seen) == set(range(203))
        assert per_rank[0] == batch_schedule(203, batch_size=4, world_size=world, rank=0, seed=5, epoch=2,
                                             lengths=lengths)  # deterministic for (seed, epoch)
        assert per_rank[0] != batch_schedule(203, batch_size=4, world_size=world, rank=0, seed=5, epoch=3,
                                             lengths=lengths)
        assert sum(padding(p) for p in per_rank) < 0.25 * sum(padding(p) for p in plain)
    # batch order is shuffled, not sorted longest-first across the epoch
    longest = [max(lengths[i] for i in b) for b in per_rank[0]]
    assert longest != sorted(longest, reverse=True)


def test_group_by_length_is_part_of_the_run_identity(tmp_path, tiny_model_dir):
    from first_eval.errors import UserError
    from first_train.finetune import run_finetune

    cfg = FinetuneConfig(model=str(tiny_model_dir), dataset="countries", limit=8, out=str(tmp_path / "ft"),
                         max_steps=2, **FAST)
    run_finetune(cfg)
    with pytest.raises(UserError, match="different settings"):
        run_finetune(cfg.replace(group_by_length=True))


# ------------------------------------------------------------------------------- frozen bottom layers


def _frozen_setup(model, tokenizer, n_top: int, **kwargs):
    from first_train.frozen import build_frozen_cache
    from first_train.trainer import freeze_all_but_top_layers

    freeze_all_but_top_layers(model, n_top)
    examples = encode_items(_items(12), tokenizer)
    fn = functools.partial(collate, pad_id=tokenizer.eos_token_id, mode="response")
    cache = build_frozen_cache(model, n_top, examples, progress=False, batch_size=5, **kwargs)
    return examples, fn, cache


def _cached_batch(examples, fn, cache, indices):
    batch = fn([examples[i] for i in indices])
    batch["frozen_hidden"] = cache.batch(indices, batch["input_ids"].shape[1])
    batch["frozen_top"] = cache.n_top
    return batch


@pytest.mark.parametrize("loss", ["ce", "first", "topk-rest"])
def test_cached_frozen_layers_give_the_same_loss_and_gradients(loss, tiny_llama):
    model, tokenizer = tiny_llama
    model = copy.deepcopy(model).train()
    examples, fn, cache = _frozen_setup(model, tokenizer, 1)
    assert cache is not None and cache.mode == "memory" and len(cache) == 12
    batch = _cached_batch(examples, fn, cache, [7, 2, 11, 0])  # another composition than the cache's batches
    n = int(batch["keep"].sum())
    batch.update(teacher_ids=torch.arange(5).repeat(n, 1).unsqueeze(0) + 100,
                 teacher_probs=torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.05]]).repeat(n, 1).unsqueeze(0))
    objective = _objective(loss)
    cached = _loss_and_grads(objective, model, batch)
    recomputed = _loss_and_grads(objective, model, {k: v for k, v in batch.items() if k != "frozen_hidden"})
    assert all(name.startswith(("model.layers.1.", "model.norm.")) for name in cached[1])
    _assert_same(cached, recomputed, rtol=1e-5)
    assert cache.check(model, batch) < 1e-5


@pytest.mark.slow
def test_cached_frozen_layers_on_smollm2():
    from first_eval.zoo import load_model

    model, tokenizer = load_model("smollm2-135m")
    model.train()
    examples, fn, cache = _frozen_setup(model, tokenizer, 4)
    batch = _cached_batch(examples, fn, cache, [3, 9, 1, 5, 10, 0, 8, 6])
    objective = _objective("ce")
    cached = _loss_and_grads(objective, model, batch)
    recomputed = _loss_and_grads(objective, model, {k: v for k, v in batch.items() if k != "frozen_hidden"})
    assert len(cached[1]) == 4 * 9 + 1  # 9 weights per layer, plus the final norm
    _assert_same(cached, recomputed, rtol=1e-5)


def _weights(directory):
    return load_file(str(directory / "model.safetensors"))


def test_training_with_the_frozen_cache_matches_recomputing(tmp_path, tiny_model_dir, cold_first_home):
    from first_train.finetune import run_finetune

    common = dict(model=str(tiny_model_dir), dataset="countries", limit=12, max_steps=6, train_top_layers=1, **FAST)
    off = run_finetune(FinetuneConfig(out=str(tmp_path / "off"), frozen_cache="off", **common))
    mem = run_finetune(FinetuneConfig(out=str(tmp_path / "mem"), frozen_cache="memory", **common))
    disk = run_finetune(FinetuneConfig(out=str(tmp_path / "disk"), frozen_cache="disk", **common))
    record = finished_run(tmp_path / "disk")
    assert finished_run(tmp_path / "off")["frozen_cache"] is None
    assert finished_run(tmp_path / "mem")["frozen_cache"]["mode"] == "memory"
    assert record["frozen_cache"]["mode"] == "disk" and not record["frozen_cache"]["reused"]
    assert list((cold_first_home / "activations").iterdir())  # keyed under $FIRST_HOME
    torch.testing.assert_close(torch.tensor(mem.losses), torch.tensor(off.losses), rtol=1e-5, atol=0)
    assert mem.losses == disk.losses  # the same states, in memory or mapped from the file
    for key, value in _weights(tmp_path / "off").items():
        torch.testing.assert_close(_weights(tmp_path / "mem")[key], value, rtol=1e-4, atol=1e-6)
        assert torch.equal(_weights(tmp_path / "mem")[key], _weights(tmp_path / "disk")[key])
    # another run on the same student and items (here another learning rate) reads the file
    again = run_finetune(FinetuneConfig(out=str(tmp_path / "lr"), frozen_cache="disk", **{**common, "lr": 3e-3}))
    assert finished_run(tmp_path / "lr")["frozen_cache"]["reused"] and again.steps == 6
    # auto with no memory budget spills to disk
    run_finetune(FinetuneConfig(out=str(tmp_path / "auto"), frozen_cache_mb=0, **common))
    assert finished_run(tmp_path / "auto")["frozen_cache"]["mode"] == "disk"


def test_a_cache_that_does_not_reproduce_the_forward_is_dropped(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import first_train.frozen as frozen
    from first_train.finetune import run_finetune

    real = frozen.bottom_hidden
    monkeypatch.setattr(frozen, "bottom_hidden", lambda *a, **k: real(*a, **k) * 2)  # e.g. a scaled embedding
    run_finetune(FinetuneConfig(model=str(tiny_model_dir), dataset="countries", limit=8, out=str(tmp_path / "x"),
                                max_steps=2, train_top_layers=1, **FAST))
    assert "do not reproduce the model's forward" in capsys.readouterr().err
    assert finished_run(tmp_path / "x")["frozen_cache"] is None


def test_frozen_layers_with_dropout_are_not_cached(tmp_path, smollm2_tokenizer, capsys):
    from tiny_models import make_tiny_llama

    from first_train.finetune import run_finetune

    model = make_tiny_llama(smollm2_tokenizer, attention_dropout=0.1)
    model.save_pretrained(tmp_path / "m")
    smollm2_tokenizer.save_pretrained(tmp_path / "m")
    run_finetune(FinetuneConfig(model=str(tmp_path / "m"), dataset="countries", limit=8, out=str(tmp_path / "x"),
                                max_steps=1, train_top_layers=1, **FAST))
    assert "use dropout" in capsys.readouterr().err
    assert finished_run(tmp_path / "x")["frozen_cache"] is None


def test_resume_with_the_frozen_cache_is_exact(tmp_path, tiny_model_dir, monkeypatch):
    import first_train.finetune as finetune

    common = dict(model=str(tiny_model_dir), dataset="countries", limit=12, max_steps=6, save_every=2,
                  train_top_layers=1, **FAST)
    reference = finetune.run_finetune(FinetuneConfig(out=str(tmp_path / "a"), **common))
    real, calls = finetune.answer_ce_objective, {"n": 0}

    def crash_in_step_5(model, batch):
        calls["n"] += 1
        if calls["n"] == 6:  # the check of the first batch is not an objective call
            raise KeyboardInterrupt
        return real(model, batch)

    monkeypatch.setattr(finetune, "answer_ce_objective", crash_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        finetune.run_finetune(FinetuneConfig(out=str(tmp_path / "b"), **common))
    monkeypatch.setattr(finetune, "answer_ce_objective", real)
    resumed = finetune.run_finetune(FinetuneConfig(out=str(tmp_path / "b"), **common))
    assert resumed.resumed_from == 4 and resumed.losses == reference.losses
    for key, value in _weights(tmp_path / "a").items():
        assert torch.equal(_weights(tmp_path / "b")[key], value), key


# ------------------------------------------------------------------------------- optimizer


def test_fused_adamw_follows_the_per_tensor_loop(tmp_path, tiny_model_dir):
    from first_train.finetune import run_finetune

    common = dict(model=str(tiny_model_dir), dataset="countries", limit=8, max_steps=4, **FAST)
    fused = run_finetune(FinetuneConfig(out=str(tmp_path / "fused"), **common))
    loop = run_finetune(FinetuneConfig(out=str(tmp_path / "loop"), fused_adamw=False, **common))
    torch.testing.assert_close(torch.tensor(fused.losses), torch.tensor(loop.losses), rtol=1e-4, atol=0)
    for key, value in _weights(tmp_path / "loop").items():
        torch.testing.assert_close(_weights(tmp_path / "fused")[key], value, rtol=1e-4, atol=1e-6)
    record = json.loads((tmp_path / "fused" / "first_train.json").read_text())
    assert record["train"]["fused_adamw"] is True
