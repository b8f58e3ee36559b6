"""Read a finalized top-k store; record its calibration; measure its size."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from first_train.store._format import (
    CALIBRATION_METHODS,
    MANIFEST,
    META_KEY,
    SeqId,
    json_bytes,
    read_json,
    validate_manifest,
    write_atomic,
)
from first_train.store.codec import decode_probs

__all__ = ["StoreSize", "TopKRecord", "TopKStore", "store_size"]


@dataclass(frozen=True)
class TopKRecord:
    """One stored sequence; rows sorted by decreasing teacher probability.

    ``ids`` int64 (T, k); ``probs`` float32 (T, k); ``start`` the token index of row 0;
    ``rs_ids`` int64 / ``rs_weights`` float32 (T, m) when the store has RS-KD samples.
    """

    seq_id: SeqId
    start: int
    ids: torch.Tensor
    probs: torch.Tensor
    rs_ids: torch.Tensor | None = None
    rs_weights: torch.Tensor | None = None


@dataclass(frozen=True)
class StoreSize:
    """Measured size of a store's top-k shard files (RS-KD files counted apart)."""

    n_positions: int
    n_sequences: int
    payload_bytes: int  # the ids and packed-probability tensors
    file_bytes: int  # whole top-k shard files: payload + offsets, starts, headers
    rs_file_bytes: int

    @property
    def bytes_per_position(self) -> float:
        return self.file_bytes / max(self.n_positions, 1)

    @property
    def payload_bytes_per_position(self) -> float:
        return self.payload_bytes / max(self.n_positions, 1)


class TopKStore:
    """A finalized top-k store, read lazily shard by shard.

    ``len(store)`` is the number of sequences; ``store.get(seq_id)`` returns ``(ids, probs)``;
    iterating yields :class:`TopKRecord` in shard order, reading each shard file once.

    Raises ``ValueError`` for a missing manifest, an unknown ``format_version`` or malformed fields.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.exists():
            raise ValueError(
                f"Expected {path}; an unfinished extraction has no manifest (run finalize_store)"
            )
        self.manifest: dict[str, Any] = validate_manifest(read_json(path), path)
        self.k: int = self.manifest["k"]
        self._rs_m: int | None = (self.manifest.get("rs") or {}).get("m")
        self._shards: list[tuple[list[SeqId], torch.Tensor, torch.Tensor]] = []
        self._index: dict[SeqId, tuple[int, int]] = {}
        for s, shard in enumerate(self.manifest["shards"]):
            with safe_open(str(self.directory / shard["file"]), framework="pt") as f:
                seq_ids = json.loads(f.metadata()[META_KEY])["seq_ids"]
                self._shards.append((seq_ids, f.get_tensor("offsets"), f.get_tensor("starts")))
            self._index.update((seq_id, (s, i)) for i, seq_id in enumerate(seq_ids))

    # -- basics --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, seq_id: object) -> bool:
        return seq_id in self._index

    @property
    def n_positions(self) -> int:
        return self.manifest["n_positions"]

    @property
    def has_rs(self) -> bool:
        return self._rs_m is not None

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.manifest.get("calibration")

    def seq_ids(self) -> list[SeqId]:
        """All sequence ids in shard order."""
        return list(self._index)

    # -- reading -------------------------------------------------------------------------------
    def _locate(self, seq_id: SeqId) -> tuple[int, int, int, int]:
        try:
            s, i = self._index[seq_id]
        except KeyError:
            raise KeyError(f"sequence {seq_id!r} is not in the store at {self.directory}") from None
        _, offsets, starts = self._shards[s]
        return s, int(offsets[i]), int(offsets[i + 1]), int(starts[i])

    def _path(self, s: int, key: str = "file") -> str:
        return str(self.directory / self.manifest["shards"][s][key])

    def get(self, seq_id: SeqId) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids int64 (T, k), probs float32 (T, k))`` of one sequence."""
        s, a, b, _ = self._locate(seq_id)
        with safe_open(self._path(s), framework="pt") as f:
            ids = f.get_slice("ids")[a:b].to(torch.int64)
            packed = f.get_slice("probs")[a:b]
        return ids, decode_probs(packed, self.k)

    def start(self, seq_id: SeqId) -> int:
        """Token index of the sequence's first stored position."""
        return self._locate(seq_id)[3]

    def get_rs(self, seq_id: SeqId) -> tuple[torch.Tensor, torch.Tensor]:
        """RS-KD samples ``(ids int64 (T, m), weights float32 (T, m))`` of one sequence."""
        if self._rs_m is None:
            raise ValueError(f"Expected RS-KD samples, but the store at {self.directory} has none")
        s, a, b, _ = self._locate(seq_id)
        with safe_open(self._path(s, "rs_file"), framework="pt") as f:
            ids = f.get_slice("rs_ids")[a:b].to(torch.int64)
            counts = f.get_slice("rs_counts")[a:b]
        return ids, counts.to(torch.float32) / self._rs_m

    def __iter__(self) -> Iterator[TopKRecord]:
        for s, (seq_ids, offsets, starts) in enumerate(self._shards):
            with safe_open(self._path(s), framework="pt") as f:
                ids = f.get_tensor("ids").to(torch.int64)
                probs = decode_probs(f.get_tensor("probs"), self.k)
            rs_ids = rs_w = None
            if self._rs_m is not None:
                with safe_open(self._path(s, "rs_file"), framework="pt") as f:
                    rs_ids = f.get_tensor("rs_ids").to(torch.int64)
                    rs_w = f.get_tensor("rs_counts").to(torch.float32) / self._rs_m
            for i, seq_id in enumerate(seq_ids):
                a, b = int(offsets[i]), int(offsets[i + 1])
                yield TopKRecord(
                    seq_id=seq_id, start=int(starts[i]), ids=ids[a:b], probs=probs[a:b],
                    rs_ids=None if rs_ids is None else rs_ids[a:b],
                    rs_weights=None if rs_w is None else rs_w[a:b],
                )

    # -- calibration & size --------------------------------------------------------------------
    def set_calibration(
        self,
        *,
        method: str,
        temperature: float | None,
        ece_before: float | None,
        ece_after: float,
        grid: Iterable[tuple[float, float]] = (),
    ) -> None:
        """Record the chosen calibration in ``manifest.json`` (atomic rewrite).

        ``method`` is ``"reshape"`` (FIRST's ``softmax(p / c)`` over the k) or ``"temperature"``
        (``softmax(log p / T)``); ``temperature`` is ``None`` when no candidate beat the
        un-calibrated teacher. ``GridResult.as_calibration(method)`` gives these fields.
        """
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"Expected method in {CALIBRATION_METHODS}, got {method!r}")
        if temperature is not None and not _positive(temperature):
            raise ValueError(f"Expected temperature > 0 or None, got {temperature!r}")
        for name, value in (("ece_before", ece_before), ("ece_after", ece_after)):
            if (value is not None or name == "ece_after") and not _finite(value):
                raise ValueError(f"Expected a finite {name}, got {value!r}")
        pairs = [[float(c), float(e)] for c, e in grid]
        self.manifest["calibration"] = {
            "method": method,
            "temperature": None if temperature is None else float(temperature),
            "ece_before": None if ece_before is None else float(ece_before),
            "ece_after": float(ece_after),
            "grid": pairs,
        }
        write_atomic(self.directory / MANIFEST, json_bytes(self.manifest))

    def size(self) -> StoreSize:
        return store_size(self.directory)

    def bytes_per_position(self) -> float:
        """Whole top-k shard-file bytes per stored position (index data and headers included)."""
        return self.size().bytes_per_position


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(x: Any) -> bool:
    return _finite(x) and x > 0


_DTYPE_BYTES = {"U8": 1, "U16": 2, "I32": 4}


def store_size(directory: str | os.PathLike[str]) -> StoreSize:
    """Measure a finalized store's shard files (see :class:`StoreSize`)."""
    directory = Path(directory)
    manifest = validate_manifest(read_json(directory / MANIFEST), directory / MANIFEST)
    payload = file_bytes = rs_bytes = 0
    for shard in manifest["shards"]:
        path = directory / shard["file"]
        file_bytes += path.stat().st_size
        with safe_open(str(path), framework="pt") as f:
            for name in ("ids", "probs"):
                t = f.get_slice(name)
                payload += math.prod(t.get_shape()) * _DTYPE_BYTES[t.get_dtype()]
        if shard.get("rs_file"):
            rs_bytes += (directory / shard["rs_file"]).stat().st_size
    return StoreSize(
        manifest["n_positions"], manifest["n_sequences"], payload, file_bytes, rs_bytes
    )
