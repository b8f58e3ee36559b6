"""The top-k teacher store: a versioned, resumable, shardable directory (DESIGN.md "Top-k store").

Layout::

    manifest.json                               written by finalize_store()
    parts/writer-00000-of-00002.json            per writer: settings, chunk list, complete flag
    topk-00000-of-00002-000000.safetensors      writer 0's first chunk of sequences
    rs-00000-of-00002-000000.safetensors        its RS-KD samples (optional)

``manifest.json``, ``format_version`` 1::

    {"format_version": 1, "teacher": str, "tokenizer_hash": str, "k": int, "vocab_size": int|null,
     "dataset_hash": str, "positions": "response"|"all", "n_positions": int, "n_sequences": int,
     "id_dtype": "uint16"|"int32", "prob_codec": {"name": "rank-floor", "bits": [12, 9, 9, 9, 9]},
     "rs": null|{"m": int}, "shards": [{"file", "n_positions", "n_sequences"[, "rs_file"]}],
     "calibration": null|{"method": "reshape"|"temperature", "temperature": float|null,
                          "ece_before", "ece_after", "grid": [[c, ece], ...]},
     "created_by": "first-toolkit X.Y.Z"}

A chunk file (safetensors) holds, for its n sequences and P positions: ``ids`` (P, k) uint16 (int32
past 65,536 tokens), ``probs`` (P, 6) uint8 packed codes at k = 5 (:mod:`first_train.store.codec`),
``offsets`` (n + 1,) int64, ``starts`` (n,) int32 — the token index of each sequence's first
stored position, its rows being the consecutive positions from there — and one metadata entry with
the sequence ids. An RS-KD file holds ``rs_ids`` (P, m) and ``rs_counts`` (P, m) uint8 (weight =
count / m, exact). A position costs 16 bytes at k = 5 (ids 10 + probabilities 6); per-sequence index
data comes on top, amortized over the sequence's positions.

Example
-------
>>> import tempfile, torch
>>> d = tempfile.mkdtemp()
>>> with StoreWriter(d, teacher="smollm2", tokenizer_hash="h", k=5, dataset_hash="d") as w:
...     _ = w.add(0, torch.arange(10).view(2, 5), torch.full((2, 5), 0.19))
>>> store = TopKStore(d)
>>> len(store), store.n_positions, store.manifest["format_version"]
(1, 2, 1)
"""

from first_train.store._format import CALIBRATION_METHODS, FORMAT_VERSION
from first_train.store.codec import (
    decode_probs,
    encode_probs,
    payload_bytes_per_position,
    prob_error_bound,
)
from first_train.store.reader import StoreSize, TopKRecord, TopKStore, store_size
from first_train.store.writer import StoreWriter, finalize_store, shard_range

__all__ = [
    "CALIBRATION_METHODS",
    "FORMAT_VERSION",
    "StoreSize",
    "StoreWriter",
    "TopKRecord",
    "TopKStore",
    "decode_probs",
    "encode_probs",
    "finalize_store",
    "payload_bytes_per_position",
    "prob_error_bound",
    "shard_range",
    "store_size",
]
