"""The top-k store: codec error bound, round trip, kill-and-resume byte identity, shard merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from first_train.losses import first_loss, topk_kd_loss
from first_train.store import (
    FORMAT_VERSION,
    StoreWriter,
    TopKStore,
    decode_probs,
    encode_probs,
    finalize_store,
    payload_bytes_per_position,
    prob_error_bound,
    shard_range,
    store_size,
)

REPO = Path(__file__).resolve().parents[2]
K = 5
V = 49_152
SETTINGS = dict(teacher="smollm2-135m", tokenizer_hash="tok123", k=K, dataset_hash="data456",
                vocab_size=V)


def synthetic_sequences(n: int, *, seed: int = 0, max_len: int = 12, rs_m: int | None = None):
    """Deterministic (seq_id, ids, probs, start, rs_ids, rs_weights) like a real extraction."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        t = int(torch.randint(0, max_len + 1, (1,), generator=g))
        logits = torch.randn(t, 64, generator=g) * 4
        full = torch.softmax(logits, -1)
        top = full.topk(K, dim=-1)
        ids = top.indices * 700 + 3  # spread over the 49k vocabulary
        rs = (None, None)
        if rs_m:
            from first_train.losses import sample_rs_tokens

            r_ids, r_w = sample_rs_tokens(full, rs_m, generator=g, from_logits=False)
            rs = (r_ids * 700 + 3, r_w)
        seq_id = f"item-{i}" if i % 2 else i
        out.append((seq_id, ids, top.values, int(torch.randint(0, 50, (1,), generator=g)), *rs))
    return out


def write_store(directory, seqs, **kwargs):
    params = {**SETTINGS, "sequences_per_shard": 4, **kwargs}
    with StoreWriter(directory, **params) as w:
        for seq_id, ids, probs, start, rs_ids, rs_w in seqs:
            w.add(seq_id, ids, probs, start=start, rs_ids=rs_ids, rs_weights=rs_w)
    return w


def dir_bytes(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------- codec
def random_sorted_rows(n: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    sharpness = torch.rand(n, 1, generator=g, dtype=torch.float64) * 8
    logits = torch.randn(n, 40, generator=g, dtype=torch.float64) * sharpness
    rows = torch.softmax(logits, -1).topk(k, dim=-1).values
    special = torch.tensor(
        [[1.0] + [0.0] * (k - 1), [1.0 / k] * k, [0.0] * k, [0.5, 0.5] + [0.0] * (k - 2)],
        dtype=torch.float64,
    )[:, :k] if k >= 2 else torch.tensor([[1.0], [0.0], [0.3]], dtype=torch.float64)
    return torch.cat([rows, special])


@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_codec_error_bound_and_no_mass_created(k):
    p = random_sorted_rows(20_000, k)
    q = decode_probs(encode_probs(p), k).double()
    err = p - q
    bound = torch.tensor(prob_error_bound(k), dtype=torch.float64)
    assert (err > -1e-6).all(), "no probability grows (but for the re-encoding guard)"
    assert (err < bound).all()
    assert float(err.abs().max()) <= 1e-3  # within the 2e-3 budget with room to spare
    assert (q.sum(-1) <= p.sum(-1) + 1e-6).all() and (q.sum(-1) <= 1 + 1e-6).all()
    assert (q[p == 0] == 0).all()
    assert (q[p == 1.0] == 1.0).all()


def test_codec_bound_values_and_sizes():
    assert max(prob_error_bound(5)) < 1e-3
    assert payload_bytes_per_position(5, V) == 16
    assert payload_bytes_per_position(5, 200_000) == 26  # int32 ids past 65,536 tokens
    assert encode_probs(random_sorted_rows(3, 5)).shape == (7, 6)
    assert encode_probs(torch.zeros(0, 5)).shape == (0, 6)
    assert decode_probs(torch.zeros(0, 6, dtype=torch.uint8), 5).shape == (0, 5)


def test_codec_bit_packing_is_lossless():
    # every code pattern survives decode -> encode unchanged
    k, g = 5, torch.Generator().manual_seed(1)
    packed = torch.randint(0, 256, (5000, 6), generator=g, dtype=torch.uint8)
    assert torch.equal(encode_probs(decode_probs(packed, k)), packed)


# --------------------------------------------------------------------------- round trip
def test_round_trip(tmp_path):
    seqs = synthetic_sequences(11, rs_m=8)
    write_store(tmp_path, seqs, rs_samples=8)
    store = TopKStore(tmp_path)
    assert len(store) == 11 and store.n_positions == sum(s[1].shape[0] for s in seqs)
    assert store.manifest["format_version"] == FORMAT_VERSION == 1
    for key in ("teacher", "tokenizer_hash", "k", "dataset_hash", "vocab_size"):
        assert store.manifest[key] == SETTINGS[key]
    assert store.manifest["positions"] == "response" and store.calibration is None
    assert [s[0] for s in seqs] == store.seq_ids() == [r.seq_id for r in store]
    bound = max(prob_error_bound(K))
    for (seq_id, ids, probs, start, rs_ids, rs_w), rec in zip(seqs, store):
        got_ids, got_probs = store.get(seq_id)
        assert got_ids.dtype == torch.int64 and got_probs.dtype == torch.float32
        assert got_ids.shape == ids.shape and torch.equal(got_ids, ids)  # topk rows come sorted
        assert ((probs - got_probs).abs() < bound).all()
        assert torch.equal(rec.ids, got_ids) and torch.equal(rec.probs, got_probs)
        assert rec.start == start == store.start(seq_id)
        r_ids, r_w = store.get_rs(seq_id)
        assert torch.equal(r_ids, rs_ids) and torch.equal(r_w, rs_w)  # exact
        assert torch.equal(rec.rs_ids, r_ids) and torch.equal(rec.rs_weights, r_w)
    with pytest.raises(KeyError, match="not in the store"):
        store.get("nope")
    assert 0 in store and "item-1" in store and "0" not in store


def test_unsorted_rows_are_stored_sorted(tmp_path):
    ids = torch.tensor([[10, 20, 30, 40, 50]])
    probs = torch.tensor([[0.05, 0.5, 0.1, 0.3, 0.05]])
    write_store(tmp_path, [("a", ids, probs, 0, None, None)])
    got_ids, got_probs = TopKStore(tmp_path).get("a")
    assert got_ids.tolist() == [[20, 40, 30, 10, 50]]  # stable: ties keep input order
    assert torch.allclose(got_probs, torch.tensor([[0.5, 0.3, 0.1, 0.05, 0.05]]), atol=1e-3)


def test_bytes_per_position_at_k5(tmp_path):
    g = torch.Generator().manual_seed(0)
    with StoreWriter(tmp_path, **SETTINGS, positions="all", sequences_per_shard=64) as w:
        for i in range(128):
            probs = torch.softmax(torch.randn(128, 50, generator=g) * 3, -1).topk(K).values
            w.add(i, torch.randint(0, V, (128, K), generator=g), probs)
    size = store_size(tmp_path)
    assert size.payload_bytes_per_position == 16.0
    assert size.bytes_per_position <= 16.5  # offsets, starts and headers amortized
    assert TopKStore(tmp_path).bytes_per_position() == size.bytes_per_position
    assert 98_304 / size.bytes_per_position > 5_900  # vs. a full fp16 row of 49,152 tokens


def test_stored_probs_drive_the_losses_like_the_originals(tmp_path):
    seqs = synthetic_sequences(4, max_len=6)
    write_store(tmp_path, seqs)
    store = TopKStore(tmp_path)
    g = torch.Generator().manual_seed(3)
    for seq_id, ids, probs, *_ in seqs:
        got_ids, got_probs = store.get(seq_id)
        student = torch.randn(1, ids.shape[0], V, generator=g)
        for f in (topk_kd_loss, lambda *a: first_loss(*a, temperature_c=0.3)):
            a = f(student, ids[None], probs[None])
            b = f(student, got_ids[None], got_probs[None])
            assert float(a) == pytest.approx(float(b), abs=5e-3)


# --------------------------------------------------------------------------- ids & validation
def test_large_vocabulary_uses_int32_ids(tmp_path):
    ids = torch.tensor([[150_000, 1, 2, 3, 4]])
    probs = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1]])
    write_store(tmp_path, [(0, ids, probs, 0, None, None)], vocab_size=200_000)
    store = TopKStore(tmp_path)
    assert store.manifest["id_dtype"] == "int32"
    assert store.get(0)[0].tolist() == ids.tolist()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ids=torch.zeros(2, 4, dtype=torch.long)), "shape"),
        (dict(ids=torch.zeros(2, 5)), "integer ids"),
        (dict(ids=torch.full((2, 5), 70_000)), r"\[0, 65536\)"),
        (dict(probs=torch.full((2, 5), 0.3)), "sum to <= 1"),
        (dict(probs=-torch.full((2, 5), 0.1)), "non-negative"),
        (dict(seq_id=1.5), "int or str"),
        (dict(start=-1), "start"),
        (dict(rs_ids=torch.zeros(2, 4, dtype=torch.long)), "no RS-KD"),
    ],
)
def test_add_rejects_bad_input(tmp_path, kwargs, match):
    args = dict(seq_id=0, ids=torch.zeros(2, 5, dtype=torch.long), probs=torch.full((2, 5), 0.1),
                start=0)
    args.update(kwargs)
    w = StoreWriter(tmp_path, **{**SETTINGS, "vocab_size": None})
    with pytest.raises(ValueError, match=match):
        w.add(args.pop("seq_id"), args.pop("ids"), args.pop("probs"), **args)


def test_rs_validation(tmp_path):
    w = StoreWriter(tmp_path, **SETTINGS, rs_samples=4)
    ids, probs = torch.zeros(2, 5, dtype=torch.long), torch.full((2, 5), 0.1)
    with pytest.raises(ValueError, match="rs_ids and rs_weights"):
        w.add(0, ids, probs)
    with pytest.raises(ValueError, match="multiples of 1/4"):
        w.add(0, ids, probs, rs_ids=torch.zeros(2, 4, dtype=torch.long),
              rs_weights=torch.full((2, 4), 0.3))
    with pytest.raises(ValueError, match="shape"):
        w.add(0, ids, probs, rs_ids=torch.zeros(2, 3, dtype=torch.long),
              rs_weights=torch.full((2, 3), 0.25))


def test_duplicate_sequence_in_one_session_is_an_error(tmp_path):
    w = StoreWriter(tmp_path, **SETTINGS)
    ids, probs = torch.zeros(1, 5, dtype=torch.long), torch.full((1, 5), 0.1)
    assert w.add("x", ids, probs)
    with pytest.raises(ValueError, match="twice"):
        w.add("x", ids, probs)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(k=0), "k >= 1"), (dict(positions="some"), "positions"), (dict(teacher=""), "teacher"),
     (dict(shard_index=2, num_shards=2), "shard_index"), (dict(rs_samples=300), "rs_samples")],
)
def test_writer_rejects_bad_settings(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        StoreWriter(tmp_path, **{**SETTINGS, **kwargs})


# --------------------------------------------------------------------------- resume
KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_store import synthetic_sequences, SETTINGS
    from first_train.store import StoreWriter

    directory, kill_after = sys.argv[1], int(sys.argv[2])
    w = StoreWriter(directory, **SETTINGS, rs_samples=6, sequences_per_shard=4)
    added = 0
    for seq_id, ids, probs, start, rs_ids, rs_w in synthetic_sequences(19, rs_m=6):
        if w.add(seq_id, ids, probs, start=start, rs_ids=rs_ids, rs_weights=rs_w):
            added += 1
        if added == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: a real kill
    w.close()
    """
)


def run_writer(directory: Path, kill_after: int) -> int:
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", script, str(directory), str(kill_after)],
                          env=env, timeout=120).returncode


def test_kill_and_resume_gives_byte_identical_store(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    write_store(clean, synthetic_sequences(19, rs_m=6), rs_samples=6)  # uninterrupted, here
    assert run_writer(killed, kill_after=10) == -9  # SIGKILL at 10 sequences: 2 chunks + 2 buffered
    assert not (killed / "manifest.json").exists()
    assert sorted(p.name for p in killed.glob("topk-*")) == [
        "topk-00000-of-00001-000000.safetensors", "topk-00000-of-00001-000001.safetensors"]
    # a kill during a write leaves a temp file behind; the resume must ignore and remove it
    (killed / "topk-00000-of-00001-000002.safetensors.tmp-99999").write_bytes(b"partial")

    resumed = StoreWriter(killed, **SETTINGS, rs_samples=6, sequences_per_shard=4)
    assert resumed.n_done == 8 and len(resumed.done_ids()) == 8
    skipped = 0
    for seq_id, ids, probs, start, rs_ids, rs_w in synthetic_sequences(19, rs_m=6):
        if not resumed.add(seq_id, ids, probs, start=start, rs_ids=rs_ids, rs_weights=rs_w):
            skipped += 1
    resumed.close()
    assert skipped == 8
    assert dir_bytes(killed) == dir_bytes(clean)
    assert len(TopKStore(killed)) == 19


def test_exception_between_flushes_then_resume(tmp_path):
    seqs = synthetic_sequences(9)
    with pytest.raises(RuntimeError):
        with StoreWriter(tmp_path / "a", **SETTINGS, sequences_per_shard=4) as w:
            for i, (seq_id, ids, probs, start, *_) in enumerate(seqs):
                if i == 6:
                    raise RuntimeError("teacher crashed")
                w.add(seq_id, ids, probs, start=start)
    w = StoreWriter(tmp_path / "a", **SETTINGS, sequences_per_shard=4)
    assert w.done_ids() == frozenset(s[0] for s in seqs[:4])
    for seq_id, ids, probs, start, *_ in seqs:
        w.add(seq_id, ids, probs, start=start)
    w.close()
    write_store(tmp_path / "b", seqs)
    assert dir_bytes(tmp_path / "a") == dir_bytes(tmp_path / "b")


def test_resume_refuses_different_settings(tmp_path):
    write_store(tmp_path, synthetic_sequences(3))
    with pytest.raises(ValueError, match="teacher"):
        StoreWriter(tmp_path, **{**SETTINGS, "teacher": "other"}, sequences_per_shard=4)
    with pytest.raises(ValueError, match="sequences_per_shard"):
        StoreWriter(tmp_path, **SETTINGS, sequences_per_shard=5)


# --------------------------------------------------------------------------- shards & merge
def test_multi_shard_writers_merge(tmp_path):
    seqs = synthetic_sequences(14, rs_m=4)
    for i in (2, 0, 1):  # any order, as separate processes would
        part = [seqs[j] for j in shard_range(len(seqs), i, 3)]
        w = write_store(tmp_path, part, rs_samples=4, shard_index=i, num_shards=3)
        assert not (tmp_path / "manifest.json").exists() or i == 1  # never auto-finalized
    assert not (tmp_path / "manifest.json").exists()
    manifest = finalize_store(tmp_path)
    assert manifest["n_sequences"] == 14 and len(manifest["shards"]) == 2 + 2 + 1  # 5, 5, 4 by 4
    assert manifest["n_positions"] == sum(s[1].shape[0] for s in seqs)
    store = TopKStore(tmp_path)
    assert store.seq_ids() == [s[0] for s in seqs]  # shard_range blocks keep dataset order
    for seq_id, ids, *_ in seqs:
        assert torch.equal(store.get(seq_id)[0], ids)
    assert finalize_store(tmp_path) == manifest  # idempotent


def test_finalize_requires_every_writer_complete(tmp_path):
    seqs = synthetic_sequences(6)
    write_store(tmp_path, seqs[:3], shard_index=0, num_shards=2)
    with pytest.raises(ValueError, match=r"unfinished: \[1\]"):
        finalize_store(tmp_path)
    w = StoreWriter(tmp_path, **SETTINGS, sequences_per_shard=4, shard_index=1, num_shards=2)
    w.add(*seqs[3][:3])
    with pytest.raises(ValueError, match=r"unfinished: \[1\]"):
        finalize_store(tmp_path)
    with pytest.raises(ValueError, match="no manifest"):
        TopKStore(tmp_path)


def test_finalize_rejects_duplicates_and_mixed_settings(tmp_path):
    seqs = synthetic_sequences(4)
    write_store(tmp_path / "dup", seqs, shard_index=0, num_shards=2)
    write_store(tmp_path / "dup", seqs[:1], shard_index=1, num_shards=2)
    with pytest.raises(ValueError, match="unique sequence ids"):
        finalize_store(tmp_path / "dup")
    write_store(tmp_path / "mix", seqs[:2], shard_index=0, num_shards=2)
    write_store(tmp_path / "mix", seqs[2:], shard_index=1, num_shards=2, dataset_hash="other")
    with pytest.raises(ValueError, match="dataset_hash"):
        finalize_store(tmp_path / "mix")


# --------------------------------------------------------------------------- manifest & calibration
def test_unknown_format_version_is_a_clear_error(tmp_path):
    write_store(tmp_path, synthetic_sequences(2))
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    for bad in (2, "1", None):
        path.write_text(json.dumps({**manifest, "format_version": bad}))
        with pytest.raises(ValueError, match="format_version 1"):
            TopKStore(tmp_path)
    path.write_text(json.dumps({key: v for key, v in manifest.items() if key != "k"}))
    with pytest.raises(ValueError, match="'k'"):
        TopKStore(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="readable JSON"):
        TopKStore(tmp_path)


def test_set_calibration_round_trips_and_survives_finalize(tmp_path):
    write_store(tmp_path, synthetic_sequences(3))
    store = TopKStore(tmp_path)
    store.set_calibration(method="reshape", temperature=0.34, ece_before=0.21, ece_after=0.05,
                          grid=[(0.3, 0.06), (0.34, 0.05)])
    expected = {"method": "reshape", "temperature": 0.34, "ece_before": 0.21, "ece_after": 0.05,
                "grid": [[0.3, 0.06], [0.34, 0.05]]}
    assert TopKStore(tmp_path).calibration == expected
    assert not list(tmp_path.glob("*.tmp-*"))
    finalize_store(tmp_path)
    assert TopKStore(tmp_path).calibration == expected
    with pytest.raises(ValueError, match="method"):
        store.set_calibration(method="magic", temperature=1.0, ece_before=0.1, ece_after=0.1)
    with pytest.raises(ValueError, match="temperature"):
        store.set_calibration(method="reshape", temperature=-1.0, ece_before=0.1, ece_after=0.1)
    with pytest.raises(ValueError, match="ece_after"):
        store.set_calibration(method="reshape", temperature=None, ece_before=0.1,
                              ece_after=float("nan"))


def test_shard_range_covers_everything_once():
    for n in (0, 1, 7, 10):
        for shards in (1, 3, 4):
            blocks = [list(shard_range(n, i, shards)) for i in range(shards)]
            assert sum(blocks, []) == list(range(n))
