"""Write a top-k store: one resumable writer per shard, then :func:`finalize_store` merges them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save as safetensors_bytes

from first_train.store._format import (
    FORMAT_VERSION,
    MANIFEST,
    META_KEY,
    SHARED_SETTINGS,
    SeqId,
    json_bytes,
    read_header,
    read_json,
    write_atomic,
)
from first_train.store.codec import CODEC, ID_DTYPES, bit_widths, encode_probs, id_dtype_name

__all__ = ["StoreWriter", "finalize_store", "shard_range"]

_PROB_SUM_TOLERANCE = 1e-3


def shard_range(n_sequences: int, shard_index: int, num_shards: int) -> range:
    """The contiguous block of ``range(n_sequences)`` that writer ``shard_index`` extracts.

    >>> [list(shard_range(5, i, 2)) for i in range(2)]
    [[0, 1, 2], [3, 4]]
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(
            f"Expected 0 <= shard_index < num_shards, got {shard_index}, {num_shards}"
        )
    base, extra = divmod(n_sequences, num_shards)
    start = shard_index * base + min(shard_index, extra)
    return range(start, start + base + (shard_index < extra))


def _check_seq_id(seq_id: Any) -> SeqId:
    if isinstance(seq_id, bool) or not isinstance(seq_id, (int, str)):
        raise ValueError(f"Expected a sequence id of type int or str, got {seq_id!r}")
    return int(seq_id) if isinstance(seq_id, int) else seq_id


class StoreWriter:
    """Write one shard of a top-k store; resumable after a kill.

    Every ``sequences_per_shard`` sequences become one chunk file, written to a temporary name and
    renamed, so a chunk exists whole or not at all. Opened on a partial directory, the writer reads
    its own chunks back, lists their sequences in :meth:`done_ids`, skips them in :meth:`add` and
    numbers new chunks after them: feeding the same sequence stream again gives files byte-identical
    to an uninterrupted run. Sequences added since the last chunk are lost in a kill (and are
    simply added again).

    Parameters
    ----------
    directory : path
        The store directory (created if missing).
    teacher, tokenizer_hash, dataset_hash : str
        Provenance recorded in the manifest.
    k : int
        Tokens stored per position.
    positions : {"response", "all"}, default="response"
    vocab_size : int, default=None
        Teacher vocabulary: ids are uint16 up to 65,536 tokens (``None`` assumes so), else int32.
    rs_samples : int, default=None
        ``m`` of the RS-KD samples passed to :meth:`add` (``None``: none stored).
    shard_index, num_shards : int, default=0, 1
        This writer's slot when several processes extract in parallel (see :func:`shard_range`).
    sequences_per_shard : int, default=1024
        Sequences per chunk file; a resume must use the same value.

    Examples
    --------
    >>> import tempfile
    >>> from first_train.store import TopKStore
    >>> d = tempfile.mkdtemp()
    >>> with StoreWriter(d, teacher="t", tokenizer_hash="h", k=2, dataset_hash="d") as w:
    ...     w.add("q1", torch.tensor([[7, 5]]), torch.tensor([[0.25, 0.75]]))
    True
    >>> ids, probs = TopKStore(d).get("q1")
    >>> ids.tolist(), probs.round(decimals=3).tolist()
    ([[5, 7]], [[0.75, 0.25]])
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        teacher: str,
        tokenizer_hash: str,
        k: int,
        dataset_hash: str,
        positions: Literal["response", "all"] = "response",
        vocab_size: int | None = None,
        rs_samples: int | None = None,
        shard_index: int = 0,
        num_shards: int = 1,
        sequences_per_shard: int = 1024,
    ) -> None:
        named = (("teacher", teacher), ("tokenizer_hash", tokenizer_hash),
                 ("dataset_hash", dataset_hash))
        for name, value in named:
            if not isinstance(value, str) or not value:
                raise ValueError(f"Expected a non-empty string {name}, got {value!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Expected k >= 1, got {k!r}")
        if positions not in ("response", "all"):
            raise ValueError(f"Expected positions 'response' or 'all', got {positions!r}")
        if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < k):
            raise ValueError(f"Expected vocab_size >= k, got {vocab_size!r}")
        if rs_samples is not None and not (isinstance(rs_samples, int) and 1 <= rs_samples <= 255):
            raise ValueError(f"Expected 1 <= rs_samples <= 255, got {rs_samples!r}")
        if not isinstance(num_shards, int) or num_shards < 1 or not 0 <= shard_index < num_shards:
            raise ValueError(
                f"Expected 0 <= shard_index < num_shards, got {shard_index}, {num_shards}"
            )
        if not isinstance(sequences_per_shard, int) or sequences_per_shard < 1:
            raise ValueError(f"Expected sequences_per_shard >= 1, got {sequences_per_shard!r}")
        self.directory = Path(directory)
        self.k, self.rs_samples = k, rs_samples
        self.shard_index, self.num_shards = shard_index, num_shards
        self.sequences_per_shard = sequences_per_shard
        self.config: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "teacher": teacher,
            "tokenizer_hash": tokenizer_hash,
            "k": k,
            "vocab_size": vocab_size,
            "dataset_hash": dataset_hash,
            "positions": positions,
            "id_dtype": id_dtype_name(vocab_size),
            "prob_codec": {"name": CODEC, "bits": bit_widths(k)},
            "rs": None if rs_samples is None else {"m": rs_samples},
            "num_shards": num_shards,
            "sequences_per_shard": sequences_per_shard,
        }
        self._id_dtype = ID_DTYPES[self.config["id_dtype"]]
        self._id_limit = vocab_size or 2**16
        self._prefix = f"{shard_index:05d}-of-{num_shards:05d}"
        self._part = self.directory / "parts" / f"writer-{self._prefix}.json"
        self._part.parent.mkdir(parents=True, exist_ok=True)
        self._chunks: list[dict[str, Any]] = []
        self._done: set[SeqId] = set()
        self._buffer: list[tuple[Any, ...]] = []
        self._buffered: set[SeqId] = set()
        self._resume()

    # -- resume --------------------------------------------------------------------------------
    def _chunk_name(self, kind: str, index: int) -> str:
        return f"{kind}-{self._prefix}-{index:06d}.safetensors"

    def _resume(self) -> None:
        if self._part.exists():
            old = read_json(self._part)
            diff = sorted(key for key in self.config if old.get(key) != self.config[key])
            if diff:
                raise ValueError(
                    f"Expected the settings of the partial store at {self.directory}, got "
                    f"different {', '.join(diff)}; remove it or write elsewhere"
                )
        for stale in self.directory.glob(f"*-{self._prefix}-*.safetensors.tmp-*"):
            stale.unlink(missing_ok=True)
        files = sorted(self.directory.glob(f"topk-{self._prefix}-*.safetensors"))
        for index, path in enumerate(files):
            if path.name != self._chunk_name("topk", index):
                raise ValueError(
                    f"Expected chunk {self._chunk_name('topk', index)} in {self.directory}, "
                    f"found {path.name} (chunks missing?)"
                )
            head = read_header(path)
            entry = {"file": path.name, "n_positions": head["n_positions"],
                     "n_sequences": len(head["seq_ids"])}
            if self.rs_samples is not None:
                entry["rs_file"] = self._chunk_name("rs", index)
                if not (self.directory / entry["rs_file"]).exists():
                    raise ValueError(f"Expected {entry['rs_file']} beside {path.name}")
            self._chunks.append(entry)
            self._done.update(head["seq_ids"])
        self._write_part(complete=False)

    def _write_part(self, *, complete: bool) -> None:
        part = {**self.config, "shard_index": self.shard_index, "chunks": self._chunks,
                "complete": complete}
        write_atomic(self._part, json_bytes(part))

    # -- public --------------------------------------------------------------------------------
    def done_ids(self) -> frozenset[SeqId]:
        """Sequence ids already persisted in this writer's chunk files (skip them upstream)."""
        return frozenset(self._done)

    @property
    def n_done(self) -> int:
        """Number of persisted sequences."""
        return len(self._done)

    def add(
        self,
        seq_id: SeqId,
        ids: torch.Tensor,
        probs: torch.Tensor,
        *,
        start: int = 0,
        rs_ids: torch.Tensor | None = None,
        rs_weights: torch.Tensor | None = None,
    ) -> bool:
        """Add one sequence; False (nothing stored) if an earlier run already persisted it.

        Parameters
        ----------
        seq_id : int or str
            Unique id of the sequence (e.g. the dataset item id).
        ids : integer Tensor of shape (T, k)
        probs : Tensor of shape (T, k)
            Teacher probabilities of ``ids``: non-negative, each row summing to <= 1. Rows are
            stored sorted by decreasing probability.
        start : int, default=0
            Token index of the first stored position (rows are positions start, start + 1, ...).
        rs_ids, rs_weights : Tensor of shape (T, m), default=None
            RS-KD samples, required iff ``rs_samples=m``; weights are multiples of ``1/m``.
        """
        seq_id = _check_seq_id(seq_id)
        if seq_id in self._done:
            return False
        if seq_id in self._buffered:
            raise ValueError(f"Expected unique sequence ids, got {seq_id!r} twice")
        ids, probs = self._check_topk(ids, probs)
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < 2**31:
            raise ValueError(f"Expected 0 <= start < 2**31, got {start!r}")
        rs = self._check_rs(rs_ids, rs_weights, ids.shape[0])
        order = torch.sort(probs, dim=-1, descending=True, stable=True).indices
        packed = encode_probs(probs.gather(-1, order))
        self._buffer.append((seq_id, ids.gather(-1, order), packed, start, *rs))
        self._buffered.add(seq_id)
        if len(self._buffer) >= self.sequences_per_shard:
            self._flush()
        return True

    def close(self, *, finalize: bool | None = None) -> None:
        """Flush the last chunk and mark this writer complete.

        ``finalize`` (default: when ``num_shards == 1``) also writes ``manifest.json``; with
        several writers, call :func:`finalize_store` once after all have closed.
        """
        self._flush()
        self._write_part(complete=True)
        if finalize if finalize is not None else self.num_shards == 1:
            finalize_store(self.directory)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:  # on an error keep what is persisted for a resume; drop the buffer
            self.close()

    # -- internals -----------------------------------------------------------------------------
    def _check_ids(self, ids: torch.Tensor, name: str) -> torch.Tensor:
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"Expected integer {name}, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self._id_limit):
            hint = "" if self.config["vocab_size"] else " (pass vocab_size for larger vocabularies)"
            raise ValueError(
                f"Expected {name} in [0, {self._id_limit}), got [{int(ids.min())}, "
                f"{int(ids.max())}]{hint}"
            )
        return ids.detach().cpu().to(torch.int64)

    def _check_topk(self, ids: Any, probs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        ids, probs = torch.as_tensor(ids), torch.as_tensor(probs)
        if ids.dim() != 2 or ids.shape[1] != self.k or probs.shape != ids.shape:
            raise ValueError(
                f"Expected ids and probs of shape (T, {self.k}), got {tuple(ids.shape)} and "
                f"{tuple(probs.shape)}"
            )
        ids = self._check_ids(ids, "ids")
        probs = probs.detach().cpu().to(torch.float64)
        if probs.numel():
            if not bool(((probs >= 0) & torch.isfinite(probs)).all()):
                raise ValueError("Expected finite, non-negative probabilities")
            worst = float(probs.sum(-1).max())
            if worst > 1 + _PROB_SUM_TOLERANCE:
                raise ValueError(
                    f"Expected each position's k probabilities to sum to <= 1, got {worst}"
                )
        return ids, probs

    def _check_rs(self, rs_ids: Any, rs_weights: Any, n_rows: int) -> tuple[Any, Any]:
        m = self.rs_samples
        if m is None:
            if rs_ids is not None or rs_weights is not None:
                raise ValueError("Expected no RS-KD samples: the writer has rs_samples=None")
            return None, None
        if rs_ids is None or rs_weights is None:
            raise ValueError(f"Expected rs_ids and rs_weights of shape ({n_rows}, {m}), got None")
        rs_ids, rs_weights = torch.as_tensor(rs_ids), torch.as_tensor(rs_weights)
        if rs_ids.shape != (n_rows, m) or rs_weights.shape != (n_rows, m):
            raise ValueError(
                f"Expected rs_ids and rs_weights of shape ({n_rows}, {m}), got "
                f"{tuple(rs_ids.shape)} and {tuple(rs_weights.shape)}"
            )
        rs_ids = self._check_ids(rs_ids, "rs_ids")
        counts = rs_weights.detach().cpu().to(torch.float64) * m
        rounded = counts.round()
        exact = bool(((counts - rounded).abs() < 1e-4).all()) if counts.numel() else True
        if not exact or (rounded.numel() and float(rounded.min()) < 0):
            raise ValueError(f"Expected rs_weights that are non-negative multiples of 1/{m}")
        return rs_ids, rounded.to(torch.uint8)

    def _flush(self) -> None:
        if not self._buffer:
            return
        seq_ids = [b[0] for b in self._buffer]
        offsets = torch.tensor([0] + [b[1].shape[0] for b in self._buffer]).cumsum(0)
        n_positions = int(offsets[-1])
        index = len(self._chunks)
        head = json.dumps(
            {"format_version": FORMAT_VERSION, "k": self.k, "n_positions": n_positions,
             "seq_ids": seq_ids},
            sort_keys=True, separators=(",", ":"),
        )
        entry: dict[str, Any] = {"file": self._chunk_name("topk", index),
                                 "n_positions": n_positions, "n_sequences": len(seq_ids)}
        if self.rs_samples is not None:  # written first: a topk file implies its rs file
            entry["rs_file"] = self._chunk_name("rs", index)
            rs = {"rs_ids": torch.cat([b[4] for b in self._buffer]).to(self._id_dtype),
                  "rs_counts": torch.cat([b[5] for b in self._buffer])}
            write_atomic(self.directory / entry["rs_file"], safetensors_bytes(rs, {META_KEY: head}))
        tensors = {
            "ids": torch.cat([b[1] for b in self._buffer]).to(self._id_dtype),
            "probs": torch.cat([b[2] for b in self._buffer]),
            "offsets": offsets.to(torch.int64),
            "starts": torch.tensor([b[3] for b in self._buffer], dtype=torch.int32),
        }
        write_atomic(self.directory / entry["file"], safetensors_bytes(tensors, {META_KEY: head}))
        self._chunks.append(entry)
        self._done.update(seq_ids)
        self._buffer, self._buffered = [], set()
        self._write_part(complete=False)


def finalize_store(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Merge every writer's part into ``manifest.json`` (atomically) and return the manifest.

    Requires all ``num_shards`` writers closed, with the same settings, and sequence ids unique
    across shards. A calibration already in the manifest is kept when the shards are unchanged.
    Idempotent.
    """
    from first_train import __version__

    directory = Path(directory)
    pattern = re.compile(r"writer-(\d{5})-of-(\d{5})\.json")
    parts: dict[tuple[int, int], dict[str, Any]] = {}
    for path in sorted((directory / "parts").glob("writer-*.json")):
        if match := pattern.fullmatch(path.name):
            parts[(int(match[1]), int(match[2]))] = read_json(path)
    if not parts:
        raise ValueError(f"Expected writer parts under {directory / 'parts'}, found none")
    totals = sorted({n for _, n in parts})
    if len(totals) != 1:
        raise ValueError(f"Expected one num_shards across the writers, got {totals}")
    num_shards = totals[0]
    unfinished = [
        i for i in range(num_shards) if not parts.get((i, num_shards), {}).get("complete")
    ]
    if unfinished:
        raise ValueError(
            f"Expected all {num_shards} writers complete; missing or unfinished: {unfinished}"
        )
    ordered = [parts[(i, num_shards)] for i in range(num_shards)]
    for i, part in enumerate(ordered[1:], start=1):
        diff = [key for key in SHARED_SETTINGS if part.get(key) != ordered[0].get(key)]
        if diff:
            raise ValueError(
                f"Expected the same settings in every writer; writer {i} differs in {diff}"
            )
    shards = [chunk for part in ordered for chunk in part["chunks"]]
    seen: set[SeqId] = set()
    for chunk in shards:
        for name in (chunk["file"], chunk.get("rs_file")):
            if name and not (directory / name).exists():
                raise ValueError(f"Expected shard file {directory / name}, which is missing")
        ids = read_header(directory / chunk["file"])["seq_ids"]
        dup = seen.intersection(ids)
        if dup:
            examples = sorted(map(str, dup))[:5]
            raise ValueError(f"Expected unique sequence ids across shards, got {examples} twice")
        seen.update(ids)
    manifest = {key: ordered[0][key] for key in SHARED_SETTINGS}
    manifest.update(
        n_positions=sum(c["n_positions"] for c in shards),
        n_sequences=sum(c["n_sequences"] for c in shards),
        shards=shards,
        calibration=None,
        created_by=f"first-toolkit {__version__}",
    )
    path = directory / MANIFEST
    if path.exists():
        old = read_json(path)
        if isinstance(old, dict) and old.get("shards") == shards:
            manifest["calibration"] = old.get("calibration")
    write_atomic(path, json_bytes(manifest))
    return manifest
