"""Format constants, manifest validation and atomic file I/O shared by writer and reader."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open

from first_train.store.codec import CODEC, ID_DTYPES, bit_widths

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CALIBRATION_METHODS = ("reshape", "temperature")
META_KEY = "first_topk"  # a single metadata key: safetensors writes several in random order
SeqId = int | str

# settings every writer of one store must share; they are copied into the manifest
SHARED_SETTINGS = ("format_version", "teacher", "tokenizer_hash", "k", "vocab_size",
                   "dataset_hash", "positions", "id_dtype", "prob_codec", "rs")

_REQUIRED: dict[str, type] = {
    "teacher": str, "tokenizer_hash": str, "k": int, "dataset_hash": str, "positions": str,
    "n_positions": int, "n_sequences": int, "id_dtype": str, "prob_codec": dict, "shards": list,
}


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary sibling, fsync it, rename it over ``path``, fsync the directory.

    (The temporary name ``<name>.tmp-<pid>`` lets a resumed writer find and remove its leftovers.)
    """
    from first_eval.fileio import fsync_dir

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"Expected a readable JSON file at {path}, got: {exc}") from None


def read_header(path: Path) -> dict[str, Any]:
    """The store metadata of one shard file (``seq_ids``, ``n_positions``, ``k``)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if META_KEY not in meta:
        raise ValueError(f"Expected a top-k shard file with {META_KEY!r} metadata, got {path}")
    return json.loads(meta[META_KEY])


def validate_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """Check a manifest's version, fields and codec; return it."""
    if not isinstance(manifest, dict):
        raise ValueError(f"Expected a JSON object in {path}, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        from first_train import __version__

        raise ValueError(
            f"Expected top-k store format_version {FORMAT_VERSION} in {path}, got {version!r}; "
            f"first-toolkit {__version__} reads format_version {FORMAT_VERSION} only"
        )
    for key, kind in _REQUIRED.items():
        value = manifest.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"Expected {key!r} of type {kind.__name__} in {path}, got {value!r}")
    expected = {"name": CODEC, "bits": bit_widths(manifest["k"])}
    if manifest["prob_codec"] != expected:
        raise ValueError(f"Expected prob_codec {expected} in {path}, got {manifest['prob_codec']}")
    if manifest["id_dtype"] not in ID_DTYPES:
        raise ValueError(
            f"Expected id_dtype in {sorted(ID_DTYPES)} in {path}, got {manifest['id_dtype']!r}"
        )
    return manifest
